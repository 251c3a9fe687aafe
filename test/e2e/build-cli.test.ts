/**
 * `kubedos build` end to end: the real CLI, the embedded Temporal stack, the build pool's worker
 * process and the real engine, on top of the rootfs layer the test run shares (see images.ts).
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, cliEnv, kubedos } from '../support/cli';
import { builtImage, sharedCaches } from '../support/images';

jest.setTimeout(30 * 60_000);

interface BuildJson {
  images: Array<{
    image: string; inputDigest: string; lockDigest: string; reused: boolean; ranMmdebstrap: boolean;
    artifacts: Array<{ format: string; file: string; sha256: string; size: number; location: string }>;
  }>;
}

let home: string;
let specDir: string;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  await builtImage(); // the shared layer and .deb cache, built once per run
  home = mkdtempSync(path.join(os.tmpdir(), 'kubedos-build-home-'));
  mkdirSync(path.join(home, 'cache'), { recursive: true });
  symlinkSync(sharedCaches().cacheDir, path.join(home, 'cache', 'build'));
  symlinkSync(sharedCaches().debCacheDir, path.join(home, 'cache', 'debs'));
  specDir = mkdtempSync(path.join(os.tmpdir(), 'kubedos-build-spec-'));
  copyFileSync(path.join(ROOT, 'test', 'fixtures', 'specs', 'e2e-build.yaml'), path.join(specDir, 'kubedos.yaml'));
  env = cliEnv({ KUBEDOS_HOME: home, KUBEDOS_POOLS: 'control,build' });
});

afterAll(async () => {
  await kubedos(['stack', 'stop'], env).catch(() => undefined);
  rmSync(home, { recursive: true, force: true });
  rmSync(specDir, { recursive: true, force: true });
});

test('build → manifest JSON, kubedos.lock, clean qcow2/vmdk; a repeat reuses; a payload change rebuilds without dpkg', async () => {
  const first = await kubedos(['build', specDir, '--json'], env, 20 * 60_000);
  expect(first.stderr).toMatch(/worker: workflow kubedos-manufacture-worker-[0-9a-f]{12}-\w+: http:\/\/127\.0\.0\.1:\d+\//);
  expect(first.code).toBe(0);
  const built = (JSON.parse(first.stdout) as BuildJson).images[0]!;
  expect(built.image).toBe('worker');
  expect(built.inputDigest).toMatch(/^[0-9a-f]{64}$/);
  expect(built.artifacts.map((a) => a.format)).toEqual(['raw', 'qcow2', 'vmdk', 'ova']);
  for (const a of built.artifacts) {
    expect(a.location.startsWith(path.join(home, 'store'))).toBe(true);
    expect(a.location.endsWith(a.sha256)).toBe(true);
  }
  const at = (format: string) => built.artifacts.find((a) => a.format === format)!.location;
  for (const format of ['qcow2', 'vmdk']) {
    const check = spawnSync('qemu-img', ['check', at(format)], { encoding: 'utf8' });
    expect(check.status).toBe(0);
  }

  const lock = JSON.parse(readFileSync(path.join(specDir, 'kubedos.lock'), 'utf8'));
  expect(lock).toMatchObject({ lockVersion: 1, sourceDateEpoch: 1700000000 });
  expect(lock.images.worker.packages.find((p: { name: string }) => p.name === 'openssh-server')).toMatchObject({ sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });

  // The same spec again: the recorded build is found, nothing is rebuilt, same digests.
  const again = (JSON.parse((await kubedos(['build', specDir, '--json'], env)).stdout) as BuildJson).images[0]!;
  expect(again.reused).toBe(true);
  expect(again.artifacts.map((a) => a.sha256)).toEqual(built.artifacts.map((a) => a.sha256));

  // A payload-only change: new artifacts, same lock, no mmdebstrap.
  const spec = readFileSync(path.join(specDir, 'kubedos.yaml'), 'utf8').replace('hello from the CLI build test', 'hello again');
  writeFileSync(path.join(specDir, 'kubedos.yaml'), spec);
  const changed = await kubedos(['build', specDir, '--json', '--format', 'qcow2'], env, 20 * 60_000);
  expect(changed.code).toBe(0);
  const rebuilt = (JSON.parse(changed.stdout) as BuildJson).images[0]!;
  expect(rebuilt.reused).toBe(false);
  expect(rebuilt.ranMmdebstrap).toBe(false);
  expect(rebuilt.lockDigest).toBe(built.lockDigest);
  expect(rebuilt.artifacts[0]!.sha256).not.toBe(built.artifacts.find((a) => a.format === 'qcow2')!.sha256);
});

test('asking for a format the Foundry does not know is a clear error naming it and the known ones', async () => {
  const r = await kubedos(['build', specDir, '--format', 'qcow2,vhdx'], env);
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/unknown format vhdx/);
  expect(r.stderr).toMatch(/the Foundry builds raw, qcow2, .*installer-media, .*pxe/);
});
