/**
 * The lock: canonical serialisation, a build from the lock (empty layer cache, the shared .deb
 * cache) bit-identical to the mirror-resolved shared image in every format, and a clear typed
 * error for a locked package that is neither cached nor on the mirror.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildImage, layerDigest, lockDigest, parseLock, serializeLock, type Lock } from '../../src/foundry';
import { sha256File } from '../../src/foundry/lock';
import { LockedPackageUnavailableError } from '../../src/errors';
import { builtImage, sharedCaches, TEST_PLAN, type BuiltImage } from '../support/images';

jest.setTimeout(30 * 60 * 1000);

let img: BuiltImage;
beforeAll(async () => {
  img = await builtImage();
});

test('kubedos.lock is canonical: stable text, sorted packages, sha256 of every .deb', () => {
  const text = serializeLock(img.lock);
  const shuffled: Lock = { ...img.lock, packages: [...img.lock.packages].reverse() };
  expect(serializeLock(shuffled)).toBe(text);
  expect(serializeLock(parseLock(text))).toBe(text);
  expect(lockDigest(shuffled)).toBe(img.manifest.lockDigest);
  const names = img.lock.packages.map((p) => p.name);
  expect(names).toEqual([...names].sort());
  for (const pkg of ['linux-image-6.1.0-56-amd64', 'openssh-server', 'systemd', 'bash']) {
    if (pkg.startsWith('linux-image-6')) expect(names.some((n) => n.startsWith('linux-image-6'))).toBe(true);
    else expect(names).toContain(pkg);
  }
  for (const p of img.lock.packages) expect(p.sha256).toMatch(/^[0-9a-f]{64}$/);
});

test('a locked package neither cached nor on the mirror is a typed error naming it', async () => {
  const bogus = { name: 'kubedos-no-such-package', version: '9.9-1', architecture: 'amd64', sha256: 'f'.repeat(64), filename: 'pool/main/k/kubedos-no-such-package/kubedos-no-such-package_9.9-1_amd64.deb', origin: 'mirror' as const };
  const lock: Lock = { ...img.lock, packages: [...img.lock.packages, bogus] };
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-lock-'));
  try {
    const err = await buildImage(TEST_PLAN, { cacheDir: path.join(dir, 'cache'), debCacheDir: sharedCaches().debCacheDir, outputDir: path.join(dir, 'out'), lock }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LockedPackageUnavailableError);
    expect((err as LockedPackageUnavailableError).packageName).toBe('kubedos-no-such-package');
    expect((err as Error).message).toContain('HTTP 404');
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('a build from the lock with an empty layer cache is bit-identical to the mirror-resolved build', async () => {
  // Warm .deb cache (the shared one), empty layer and disk caches: mmdebstrap runs again, from the lock.
  const dir = await fs.mkdtemp(path.join(process.env.KUBEDOS_TEST_IMAGES ?? os.tmpdir(), 'kubedos-lock-'));
  try {
    const outputDir = path.join(dir, 'out');
    const result = await buildImage(TEST_PLAN, { cacheDir: path.join(dir, 'cache'), debCacheDir: sharedCaches().debCacheDir, outputDir, lock: img.lock });
    console.log(`locked build, empty layer cache: rootfs ${result.timings.prepareRootfs} ms; total ${result.totalMs} ms`, result.timings);
    expect(result.ranMmdebstrap).toBe(true);
    expect(result.manifest.lockDigest).toBe(img.manifest.lockDigest);
    expect(result.manifest.layerDigest).toBe(layerDigest(TEST_PLAN, lockDigest(img.lock)));
    expect(result.manifest).toEqual(img.manifest);
    for (const art of img.manifest.artifacts) {
      expect({ file: art.file, sha256: await sha256File(path.join(outputDir, art.file)) }).toEqual({ file: art.file, sha256: art.sha256 });
    }
  } finally {
    if (!process.env.KUBEDOS_KEEP_WORK) await fs.rm(dir, { recursive: true, force: true });
  }
});
