/** Spec → plan mapping, the plan's wire form, kubedos.lock, the local store, byte comparison. */
import { mkdtempSync, promises as fs, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { OUTPUT_FORMATS as CATALOG_FORMATS, parseSpec } from '../../src/platform';
import { FORMAT_NAMES } from '../../src/foundry/formats';
import { inputDigest } from '../../src/foundry/plan';
import { artifactKey } from '../../activities/build';
import { parsePlan, planFromSpec, serializePlan } from '../../src/foundry/from-spec';
import { lockInputsDigest } from '../../src/foundry/lock';
import { readLockFile, serializeLockFile, usableLock, writeLockFile, type LockFile } from '../../src/platform/lock-file';
import { LocalStore } from '../../src/store/local';
import { DigestMismatchError, ConfigError } from '../../src/errors';
import { firstDifference } from '../../src/cli/commands/build';

const tmp = () => mkdtempSync(path.join(os.tmpdir(), 'kubedos-unit-'));

function specWithSource() {
  const dir = tmp();
  writeFileSync(path.join(dir, 'blob.bin'), Buffer.from([0, 255, 1, 254]));
  const text = `apiVersion: kubedos.dev/v1alpha1
kind: Platform
metadata: { name: t }
base: { sourceDateEpoch: 1700000000, packages: [jq] }
images:
  web:
    packages: [nginx]
    files:
      - { path: /etc/x.bin, source: blob.bin, mode: "0600", owner: "root:adm" }
      - { path: /etc/motd, content: "hi\\n" }
    disk: { size: 3GiB }
    outputs: [qcow2, iso]
`;
  writeFileSync(path.join(dir, 'kubedos.yaml'), text);
  return { dir, spec: parseSpec(text, path.join(dir, 'kubedos.yaml')) };
}

test('planFromSpec maps packages, payload (binary sources included), modes, disk and formats', () => {
  const { spec } = specWithSource();
  const plan = planFromSpec(spec, 'web', { sourceDateEpoch: 1700000000, formats: ['qcow2'] });
  expect(plan.base.packages).toEqual(expect.arrayContaining(['linux-image-amd64', 'jq', 'nginx']));
  expect(plan.image.files[0]).toEqual({ path: '/etc/x.bin', content: Buffer.from([0, 255, 1, 254]), mode: 0o600, owner: 'root:adm' });
  expect(plan.image.diskSizeBytes).toBe(3 * 2 ** 30);
  expect(plan.formats).toEqual(['qcow2']);
  // The wire form round-trips exactly, binary content included, and is stable.
  expect(parsePlan(serializePlan(plan))).toEqual(plan);
  expect(serializePlan(parsePlan(serializePlan(plan)))).toBe(serializePlan(plan));
});

test('every format the spec accepts is one the engine makes; an unknown --format is refused by name', () => {
  expect([...FORMAT_NAMES].sort()).toEqual(CATALOG_FORMATS.map((f) => f.name).sort());
  const { spec } = specWithSource();
  expect(planFromSpec(spec, 'web', { sourceDateEpoch: 1 }).formats).toEqual(['qcow2', 'iso']);
  expect(() => planFromSpec(spec, 'web', { sourceDateEpoch: 1, formats: ['qcow2', 'vhdx'] })).toThrow(ConfigError);
  expect(() => planFromSpec(spec, 'web', { sourceDateEpoch: 1, formats: ['qcow2', 'vhdx'] })).toThrow(/unknown format vhdx/);
  expect(() => planFromSpec(spec, 'nope', { sourceDateEpoch: 1, formats: ['raw'] })).toThrow(/no image named "nope"/);
});

test('kubedos.lock round-trips, is stable, and an image whose packages changed has no usable lock', async () => {
  const { dir, spec } = specWithSource();
  const plan = planFromSpec(spec, 'web', { sourceDateEpoch: 1700000000, formats: ['raw'] });
  const lock = { lockVersion: 1 as const, suite: 'bookworm', architecture: 'amd64', baseInputs: lockInputsDigest(plan.base), packages: [
    { name: 'zlib1g', version: '1:1.2.13', architecture: 'amd64', sha256: 'a'.repeat(64), filename: 'pool/z.deb', origin: 'mirror' as const },
  ] };
  const file: LockFile = { lockVersion: 1, sourceDateEpoch: 1700000000, images: { web: lock } };
  await writeLockFile(path.join(dir, 'kubedos.yaml'), file);
  const read = readLockFile(path.join(dir, 'kubedos.yaml'))!;
  expect(serializeLockFile(read)).toBe(serializeLockFile(file));
  expect(usableLock(read, 'web', plan.base)).toEqual(lock);
  expect(usableLock(read, 'web', { ...plan.base, packages: [...plan.base.packages, 'curl'] })).toBeUndefined();
  await fs.writeFile(path.join(dir, 'kubedos.lock'), '{"lockVersion": 7}');
  expect(() => readLockFile(dir)).toThrow(/not a kubedos lock file/);
});

test('the local store is content-addressed, idempotent and refuses tampered blobs', async () => {
  const store = new LocalStore(tmp());
  const a = await store.putBytes('hello');
  expect(a.sha256).toBe('2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824');
  expect(await store.putBytes('hello')).toEqual(a);
  expect((await store.getBytes(a.sha256)).toString()).toBe('hello');
  await store.setRef('builds/x', a.sha256);
  expect(await store.getRef('builds/x')).toBe(a.sha256);
  expect(await store.getRef('builds/missing')).toBeUndefined();
  await expect(store.setRef('../escape', a.sha256)).rejects.toThrow(/not a valid ref name/);
  const blob = store.localPath(a.sha256);
  await fs.chmod(blob, 0o644);
  await fs.writeFile(blob, 'hellO');
  await expect(store.getBytes(a.sha256)).rejects.toBeInstanceOf(DigestMismatchError);
});

test('firstDifference finds the first differing byte across chunk boundaries', async () => {
  const dir = tmp();
  const big = Buffer.alloc(3 * 2 ** 20 + 17, 7);
  const other = Buffer.from(big);
  other[2 ** 20 + 5] = 8;
  await fs.writeFile(path.join(dir, 'a'), big);
  await fs.writeFile(path.join(dir, 'b'), other);
  await fs.writeFile(path.join(dir, 'c'), big.subarray(0, 100));
  expect(await firstDifference(path.join(dir, 'a'), path.join(dir, 'a'))).toBeUndefined();
  expect(await firstDifference(path.join(dir, 'a'), path.join(dir, 'b'))).toBe(2 ** 20 + 5);
  expect(await firstDifference(path.join(dir, 'a'), path.join(dir, 'c'))).toBe(100);
});

test('the image digest that seeds every identifier ignores the format list, its order and the formats\' own options', () => {
  const { spec } = specWithSource();
  const plan = planFromSpec(spec, 'web', { sourceDateEpoch: 1 });
  const digest = (p: typeof plan) => inputDigest(p, 'k'.repeat(64));
  expect(digest({ ...plan, formats: ['qcow2'] })).toBe(digest({ ...plan, formats: ['raw', 'qcow2', 'vmdk', 'ova'] }));
  expect(digest({ ...plan, formats: ['ova', 'qcow2'] })).toBe(digest({ ...plan, formats: ['qcow2', 'ova'] }));
  expect(digest({ ...plan, image: { ...plan.image, installerIso: { source: '/a.iso', sha256: 'a'.repeat(64) } } })).toBe(digest(plan));
  // What the image is made of does count.
  expect(digest({ ...plan, image: { ...plan.image, diskSizeBytes: plan.image.diskSizeBytes * 2 } })).not.toBe(digest(plan));
  expect(inputDigest(plan, 'j'.repeat(64))).not.toBe(digest(plan));
  // A build record of installer-media is per ISO; one of qcow2 is not.
  const withIso = (sha: string) => ({ ...plan, image: { ...plan.image, installerIso: { source: '/x.iso', sha256: sha } } });
  expect(artifactKey(withIso('a'.repeat(64)), undefined, 'installer-media')).not.toBe(artifactKey(withIso('b'.repeat(64)), undefined, 'installer-media'));
  expect(artifactKey(withIso('a'.repeat(64)), undefined, 'qcow2')).toBe(artifactKey(withIso('b'.repeat(64)), undefined, 'qcow2'));
});
