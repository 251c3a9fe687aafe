/**
 * The deploy side: resolveImageRef and fetchVerifiedArtifact on the local store and on a real S3
 * server (versitygw) — verified download, cache reuse, and refusal of a flipped byte, a wrong
 * signature, an untrusted key and an unsigned manifest. Also the trust resolution, pins and gc's
 * treatment of cache refs.
 */
import { createHash } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { BuildManifest } from '../../src/foundry/manifest';
import { ConfigError, DigestMismatchError, SignatureInvalidError, StoreError } from '../../src/errors';
import { fetchVerifiedArtifact, resolveImageRef } from '../../src/store/fetch';
import { gc } from '../../src/store/gc';
import { describeRefs } from '../../src/store/inventory';
import { LocalStore } from '../../src/store/local';
import { listPins, pin, unpin } from '../../src/store/pins';
import { publishBuild } from '../../src/store/publish';
import { blobKey, type S3Store } from '../../src/store/s3';
import { FoundrySigner } from '../../src/store/signing';
import { signatureRefOf, type ArtifactStore } from '../../src/store/store';
import { installedAllowedSignersPath, trustedSigners } from '../../src/store/trust';
import { startS3Server, type S3TestServer } from '../support/s3-server';

jest.setTimeout(180_000);

const hex = (s: string) => createHash('sha256').update(s).digest('hex');
let server: S3TestServer;
let tmp: string;
let signer: FoundrySigner;
let allowedSigners: string;
let otherSigners: string;
const s3Stores: S3Store[] = [];
const savedHome = process.env.KUBEDOS_HOME;

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-fetch-'));
  server = await startS3Server('kubedos-fetch');
  signer = new FoundrySigner(path.join(tmp, 'keys', 'foundry_ed25519'));
  allowedSigners = path.join(tmp, 'allowed_signers');
  await fs.writeFile(allowedSigners, `${await signer.allowedSignersLine()}\n`);
  const other = new FoundrySigner(path.join(tmp, 'other', 'foundry_ed25519'));
  otherSigners = path.join(tmp, 'other_signers');
  await fs.writeFile(otherSigners, `${await other.allowedSignersLine()}\n`);
});

afterAll(async () => {
  for (const s of s3Stores) s.destroy();
  await server?.stop();
  if (savedHome === undefined) delete process.env.KUBEDOS_HOME;
  else process.env.KUBEDOS_HOME = savedHome;
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

async function flipByte(file: string, at = 10): Promise<void> {
  await fs.chmod(file, 0o644);
  const handle = await fs.open(file, 'r+');
  const one = Buffer.alloc(1);
  await handle.read(one, 0, 1, at);
  one[0] ^= 0x01;
  await handle.write(one, 0, 1, at);
  await handle.close();
}

interface Backend {
  name: string;
  make: () => ArtifactStore;
  blobFile: (store: ArtifactStore, sha256: string) => string;
}

const backends: Backend[] = [
  { name: 'local', make: () => new LocalStore(path.join(tmp, `store-${Math.random().toString(36).slice(2)}`)), blobFile: (s, d) => s.localPath(d)! },
  {
    name: 's3',
    make: () => {
      const s = server.store();
      s3Stores.push(s);
      return s;
    },
    blobFile: (_s, d) => server.objectFile(blobKey(d)),
  },
];

/** Publish a fake two-format build of `name`; returns the manifest digest and the artifacts' bytes. */
async function published(store: ArtifactStore, name: string) {
  const outputDir = await fs.mkdtemp(path.join(tmp, `out-${name}-`));
  const artifacts: BuildManifest['artifacts'] = [];
  const bytes: Record<string, Buffer> = {};
  for (const format of ['raw', 'qcow2']) {
    const data = Buffer.from(`${name}:${format}:${Math.random()}:`.repeat(5000));
    const file = `${name}.${format}`;
    await fs.writeFile(path.join(outputDir, file), data);
    bytes[format] = data;
    artifacts.push({ format, file, sha256: createHash('sha256').update(data).digest('hex'), size: data.length });
  }
  const manifest: BuildManifest = {
    schema: 'kubedos.build-manifest/v1', image: { name, role: 'worker', hostname: name },
    inputDigest: hex(`in:${name}`), layerDigest: hex('layer'), lockDigest: hex('lock'), sourceDateEpoch: 1_700_000_000, diskSizeBytes: 1 << 30, artifacts,
  };
  const lockText = `${JSON.stringify({ lockVersion: 1, suite: 'bookworm', architecture: 'amd64', baseInputs: 'x', packages: [] }, null, 2)}\n`;
  const result = await publishBuild(store, { outputDir, manifest, lockText, specDigest: hex('spec'), signer });
  return { manifestDigest: result.manifest.sha256, artifacts, bytes };
}

describe.each(backends)('$name store', (backend) => {
  test('resolveImageRef names the current publication; an unknown image is a clear error', async () => {
    const store = backend.make();
    const { manifestDigest } = await published(store, 'web');
    expect(await resolveImageRef(store, 'web')).toBe(manifestDigest);
    const err = await resolveImageRef(store, 'nope').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect((err as Error).message).toBe(`no published image "nope" in ${store.location} (ref images/nope/latest does not exist)`);
  });

  test('fetchVerifiedArtifact downloads, verifies and caches; re-downloads a damaged copy', async () => {
    const store = backend.make();
    const { manifestDigest, artifacts, bytes } = await published(store, 'web');
    const destDir = path.join(tmp, `dest-${backend.name}`);
    const progress: string[] = [];
    const first = await fetchVerifiedArtifact({ store, manifestDigest, format: 'qcow2', destDir, allowedSigners, onProgress: (p) => progress.push(p.phase) });
    const qcow2 = artifacts.find((a) => a.format === 'qcow2')!;
    expect(first).toMatchObject({ sha256: qcow2.sha256, size: qcow2.size, format: 'qcow2', manifestDigest, cached: false });
    expect(first.path).toBe(path.join(destDir, `${qcow2.sha256.slice(0, 16)}-web.qcow2`));
    expect(first.manifest.image.name).toBe('web');
    expect((await fs.readFile(first.path)).equals(bytes.qcow2!)).toBe(true);
    expect(progress).toContain('download');
    expect((await fs.readdir(destDir)).filter((f) => f.includes('.tmp'))).toEqual([]);

    const again = await fetchVerifiedArtifact({ store, manifestDigest, format: 'qcow2', destDir, allowedSigners });
    expect(again).toMatchObject({ path: first.path, cached: true });

    // A damaged local copy is never trusted by its name: it is replaced by a verified download.
    await flipByte(first.path);
    const repaired = await fetchVerifiedArtifact({ store, manifestDigest, format: 'qcow2', destDir, allowedSigners });
    expect(repaired.cached).toBe(false);
    expect((await fs.readFile(first.path)).equals(bytes.qcow2!)).toBe(true);

    // Unknown format, and an artifact digest where a manifest digest belongs.
    await expect(fetchVerifiedArtifact({ store, manifestDigest, format: 'vmdk', destDir, allowedSigners })).rejects.toThrow(/has no vmdk artifact; it has raw, qcow2/);
    await expect(fetchVerifiedArtifact({ store, manifestDigest: qcow2.sha256, format: 'qcow2', destDir, allowedSigners })).rejects.toThrow(/is not a publication manifest/);
  });

  test('a flipped byte in the stored artifact is refused: DigestMismatchError, nothing at the destination', async () => {
    const store = backend.make();
    const { manifestDigest, artifacts } = await published(store, 'db');
    const raw = artifacts.find((a) => a.format === 'raw')!;
    await flipByte(backend.blobFile(store, raw.sha256), 1234);
    const destDir = path.join(tmp, `flipped-${backend.name}`);
    const err = await fetchVerifiedArtifact({ store, manifestDigest, format: 'raw', destDir, allowedSigners }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DigestMismatchError);
    expect(err).toMatchObject({ expected: raw.sha256 });
    expect((err as Error).message).toMatch(new RegExp(`content hashes to sha256:[0-9a-f]{64}, expected sha256:${raw.sha256}`));
    expect(existsSync(path.join(destDir, `${raw.sha256.slice(0, 16)}-db.raw`))).toBe(false);
    expect(existsSync(destDir) ? (await fs.readdir(destDir)) : []).toEqual([]);
  });

  test('a wrong signature, an untrusted key and an unsigned manifest are refused: SignatureInvalidError', async () => {
    const store = backend.make();
    const { manifestDigest } = await published(store, 'lb');
    const destDir = path.join(tmp, `sig-${backend.name}`);
    const fetch = (signers = allowedSigners) => fetchVerifiedArtifact({ store, manifestDigest, format: 'raw', destDir, allowedSigners: signers }).catch((e: unknown) => e);

    // Signed by a key this machine does not trust.
    const untrusted = await fetch(otherSigners);
    expect(untrusted).toBeInstanceOf(SignatureInvalidError);
    expect((untrusted as Error).message).toContain(`the signature of manifest sha256:${manifestDigest} is not valid`);

    // A valid signature by the trusted key, but of other bytes.
    const good = (await store.getRef(signatureRefOf(manifestDigest)))!;
    const wrong = await store.putBytes(await signer.sign(Buffer.from('another manifest\n')));
    await store.setRef(signatureRefOf(manifestDigest), wrong.sha256);
    expect(await fetch()).toBeInstanceOf(SignatureInvalidError);

    // No signature at all.
    await store.deleteRef(signatureRefOf(manifestDigest));
    const unsigned = await fetch();
    expect(unsigned).toBeInstanceOf(SignatureInvalidError);
    expect((unsigned as Error).message).toMatch(/is not valid: it is unsigned: .* holds no signature for it \(ref signatures\/[0-9a-f]{64}\)/);
    expect(existsSync(destDir)).toBe(false); // nothing was downloaded before the signature checked out

    await store.setRef(signatureRefOf(manifestDigest), good);
    await expect(fetchVerifiedArtifact({ store, manifestDigest, format: 'raw', destDir, allowedSigners })).resolves.toMatchObject({ cached: false });
  });
});

test('trust: --allowed-signers, else KUBEDOS_HOME/keys/allowed_signers, else the local Foundry key, else a ConfigError naming both', async () => {
  const home = await fs.mkdtemp(path.join(tmp, 'home-'));
  process.env.KUBEDOS_HOME = home;
  const missing = await trustedSigners().catch((e: unknown) => e);
  expect(missing).toBeInstanceOf(ConfigError);
  expect((missing as Error).message).toBe(`no trusted Foundry key: neither ${path.join(home, 'keys', 'allowed_signers')} nor the Foundry key ${path.join(home, 'keys', 'foundry_ed25519.pub')} exists`);
  expect((missing as ConfigError).hint).toMatch(/kubedos store key/);
  await expect(trustedSigners({ allowedSigners: path.join(home, 'nope') })).rejects.toThrow(/--allowed-signers .*nope cannot be read/);

  // This machine is the Foundry: its own key is trusted (a derived file, removed afterwards).
  const foundry = new FoundrySigner(path.join(home, 'keys', 'foundry_ed25519'));
  await foundry.ensureKey();
  const own = await trustedSigners();
  expect(own.source).toMatch(/this machine's Foundry key/);
  expect((await fs.readFile(own.file, 'utf8')).trim()).toBe(await foundry.allowedSignersLine());
  await own.dispose();
  expect(existsSync(own.file)).toBe(false);

  // An installed allowed_signers wins over the local key.
  await fs.writeFile(installedAllowedSignersPath(), await fs.readFile(otherSigners));
  const installed = await trustedSigners();
  expect(installed.file).toBe(path.join(home, 'keys', 'allowed_signers'));
  // …so the default trust now refuses this Foundry's publications.
  const store = new LocalStore(path.join(home, 'store'));
  const { manifestDigest } = await published(store, 'web');
  await expect(fetchVerifiedArtifact({ store, manifestDigest, format: 'raw', destDir: path.join(home, 'dl') })).rejects.toBeInstanceOf(SignatureInvalidError);
  await fs.writeFile(installedAllowedSignersPath(), await fs.readFile(allowedSigners));
  await expect(fetchVerifiedArtifact({ store, manifestDigest, format: 'raw', destDir: path.join(home, 'dl') })).resolves.toMatchObject({ cached: false });
});

test('pins are named refs gc keeps; cache refs live only while what they name is kept', async () => {
  const store = new LocalStore(path.join(tmp, 'gc-store'));
  const old = await published(store, 'web');
  const current = await published(store, 'web'); // moves images/web/latest
  expect(old.manifestDigest).not.toBe(current.manifestDigest);
  // Build records (caches) for both, as buildImage writes them.
  const record = (p: typeof old) => store.putBytes(JSON.stringify({ image: 'web', manifestDigest: hex('x'), artifacts: p.artifacts.map((a) => ({ ...a, location: '' })) }));
  await store.setRef('builds/old', (await record(old)).sha256);
  await store.setRef('builds/current', (await record(current)).sha256);

  await expect(pin(store, 'sha256:' + hex('absent'), 'fleet/web')).rejects.toThrow(/is not in/);
  await expect(pin(store, old.manifestDigest, 'Fleet Web')).rejects.toThrow(/--reason "Fleet Web" is not usable/);
  const p = await pin(store, `sha256:${old.manifestDigest}`, 'fleet/web');
  expect(p).toEqual({ sha256: old.manifestDigest, reason: 'fleet/web', ref: `pins/fleet/web/${old.manifestDigest}` });
  await pin(store, old.manifestDigest, 'golden');
  expect(await listPins(store)).toEqual([
    { sha256: old.manifestDigest, reason: 'fleet/web', ref: `pins/fleet/web/${old.manifestDigest}` },
    { sha256: old.manifestDigest, reason: 'golden', ref: `pins/golden/${old.manifestDigest}` },
  ]);

  const inventory = await describeRefs(store);
  expect(inventory.find((e) => e.ref === 'images/web/latest')).toMatchObject({ kind: 'publication', image: 'web', signed: true, sha256: current.manifestDigest });
  expect(inventory.find((e) => e.ref === 'builds/old')).toMatchObject({ kind: 'build-record', image: 'web' });
  expect(inventory.find((e) => e.ref.startsWith('pins/golden/'))).toMatchObject({ kind: 'publication', pinned: true });

  // Pinned: the old publication and its build record survive.
  const caches = ['builds/'];
  let r = await gc(store, { minAgeMs: 0, caches });
  expect(r.removedRefs).toEqual([]);
  for (const a of old.artifacts) expect(await store.has(a.sha256)).toBe(true);

  // Unpinned (one reason at a time): the old artifacts go, and so does their cache record.
  expect(await unpin(store, old.manifestDigest, 'golden')).toHaveLength(1);
  expect((await gc(store, { minAgeMs: 0, caches, dryRun: true })).removedBlobs).toEqual([]);
  expect(await unpin(store, old.manifestDigest)).toHaveLength(1);
  r = await gc(store, { minAgeMs: 0, caches, dryRun: true });
  expect(r.removedRefs).toEqual(['builds/old', signatureRefOf(old.manifestDigest)]);
  expect(r.removedBlobs.map((b) => b.sha256)).toEqual(expect.arrayContaining([old.manifestDigest, ...old.artifacts.map((a) => a.sha256)]));
  r = await gc(store, { minAgeMs: 0, caches });
  for (const a of old.artifacts) expect(await store.has(a.sha256)).toBe(false);
  for (const a of current.artifacts) expect(await store.has(a.sha256)).toBe(true);
  expect(await store.listRefs()).toEqual(['builds/current', 'images/web/latest', signatureRefOf(current.manifestDigest)].sort());
});
