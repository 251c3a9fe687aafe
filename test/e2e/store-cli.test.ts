/**
 * The store from the command line, with KUBEDOS_S3_* selecting a real S3 server (versitygw, started
 * by this file): `store ls`, `verify --artifact` (good, tampered, unsigned), `store pin / pins /
 * unpin`, `store gc`. The publications are made in-process with the Foundry key under the CLI's
 * KUBEDOS_HOME, which is what the CLI then trusts by default.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { BuildManifest } from '../../src/foundry/manifest';
import { publishBuild } from '../../src/store/publish';
import { blobKey, type S3Store } from '../../src/store/s3';
import { FoundrySigner } from '../../src/store/signing';
import { signatureRefOf } from '../../src/store/store';
import { cliEnv, kubedos } from '../support/cli';
import { startS3Server, type S3TestServer } from '../support/s3-server';

jest.setTimeout(180_000);

let server: S3TestServer;
let store: S3Store;
let home: string;
let env: NodeJS.ProcessEnv;
const hex = (s: string) => createHash('sha256').update(s).digest('hex');

async function publish(name: string, seed: string) {
  const outputDir = await fs.mkdtemp(path.join(home, `out-${name}-`));
  const artifacts: BuildManifest['artifacts'] = [];
  for (const format of ['raw', 'qcow2']) {
    const data = Buffer.from(`${seed}:${format}:`.repeat(4000));
    await fs.writeFile(path.join(outputDir, `${name}.${format}`), data);
    artifacts.push({ format, file: `${name}.${format}`, sha256: createHash('sha256').update(data).digest('hex'), size: data.length });
  }
  const manifest: BuildManifest = {
    schema: 'kubedos.build-manifest/v1', image: { name, role: 'worker', hostname: name },
    inputDigest: hex(`in:${seed}`), layerDigest: hex('layer'), lockDigest: hex('lock'), sourceDateEpoch: 1_700_000_000, diskSizeBytes: 1 << 30, artifacts,
  };
  const lockText = `${JSON.stringify({ lockVersion: 1, suite: 'bookworm', architecture: 'amd64', baseInputs: 'x', packages: [] }, null, 2)}\n`;
  const signer = new FoundrySigner(path.join(home, 'keys', 'foundry_ed25519'));
  const r = await publishBuild(store, { outputDir, manifest, lockText, specDigest: hex('spec'), signer });
  return { manifest: r.manifest.sha256, raw: artifacts[0]!.sha256, qcow2: artifacts[1]!.sha256 };
}

let oldWeb: Awaited<ReturnType<typeof publish>>;
let web: Awaited<ReturnType<typeof publish>>;
let db: Awaited<ReturnType<typeof publish>>;

beforeAll(async () => {
  server = await startS3Server('kubedos-cli');
  store = server.store();
  home = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-store-cli-'));
  env = cliEnv({
    KUBEDOS_HOME: home,
    KUBEDOS_S3_BUCKET: server.bucket,
    KUBEDOS_S3_ENDPOINT: server.endpoint,
    KUBEDOS_S3_REGION: 'us-east-1',
    KUBEDOS_S3_PATH_STYLE: 'true',
    AWS_ACCESS_KEY_ID: server.config.credentials!.accessKeyId,
    AWS_SECRET_ACCESS_KEY: server.config.credentials!.secretAccessKey,
    AWS_SESSION_TOKEN: undefined,
    AWS_PROFILE: undefined,
  });
  oldWeb = await publish('web', 'web-1');
  web = await publish('web', 'web-2'); // images/web/latest moves here
  db = await publish('db', 'db-1');
});

afterAll(async () => {
  store?.destroy();
  await server?.stop();
  if (home) await fs.rm(home, { recursive: true, force: true });
});

test('store ls lists the S3 bucket the environment selects: publications, signed', async () => {
  const r = await kubedos(['store', 'ls', '--json'], env);
  expect(r.code).toBe(0);
  const out = JSON.parse(r.stdout);
  expect(out.store).toBe('s3://kubedos-cli');
  expect(out.refs).toEqual([
    expect.objectContaining({ ref: 'images/db/latest', sha256: db.manifest, kind: 'publication', image: 'db', signed: true }),
    expect.objectContaining({ ref: 'images/web/latest', sha256: web.manifest, kind: 'publication', image: 'web', signed: true }),
  ]);
  const table = await kubedos(['store', 'ls'], env);
  expect(table.stdout).toMatch(/^images\/web\/latest\s+[0-9a-f]{16}\s+publication\s+web: raw, qcow2$/m);
});

test('verify --artifact checks digest and signature and names the manifest and its ref', async () => {
  const r = await kubedos(['verify', '--artifact', `sha256:${web.qcow2}`, '--json'], env);
  expect(r.code).toBe(0);
  expect(JSON.parse(r.stdout)).toMatchObject({
    verified: true, store: 's3://kubedos-cli', artifact: web.qcow2, manifest: web.manifest, refs: ['images/web/latest'],
    image: 'web', format: 'qcow2', file: 'web.qcow2', trust: expect.stringMatching(/Foundry key .*foundry_ed25519\.pub/),
  });
  const human = await kubedos(['verify', '--artifact', web.raw], env);
  expect(human.code).toBe(0);
  expect(human.stdout).toContain(`verified: sha256:${web.raw}`);
  expect(human.stdout).toContain(`manifest   sha256:${web.manifest} (images/web/latest): image web, raw artifact web.raw`);
});

test('verify --artifact refuses a tampered artifact and an unsigned manifest, with the reason and exit 1', async () => {
  // A flipped byte in the stored object, behind the server's back.
  const file = server.objectFile(blobKey(db.raw));
  const bytes = await fs.readFile(file);
  bytes[100] ^= 0x01;
  await fs.writeFile(file, bytes);
  const tampered = await kubedos(['verify', '--artifact', db.raw], env);
  expect(tampered.code).toBe(1);
  expect(tampered.stdout).toBe('');
  expect(tampered.stderr).toContain(`error: s3://kubedos-cli/blobs/sha256/${db.raw}: content hashes to sha256:`);
  expect(tampered.stderr).toContain(`expected sha256:${db.raw}`);
  expect(tampered.stderr).toMatch(/hint: the blob is corrupt or was tampered with/);
  bytes[100] ^= 0x01;
  await fs.writeFile(file, bytes);

  // The manifest's signature removed: the artifact is intact but nothing vouches for it.
  const sig = (await store.getRef(signatureRefOf(db.manifest)))!;
  await store.deleteRef(signatureRefOf(db.manifest));
  const unsigned = await kubedos(['verify', '--artifact', db.qcow2, '--json'], env);
  expect(unsigned.code).toBe(1);
  expect(JSON.parse(unsigned.stdout).error).toMatchObject({
    name: 'SignatureInvalidError',
    message: `the signature of manifest sha256:${db.manifest} is not valid: it is unsigned: s3://kubedos-cli holds no signature for it (ref signatures/${db.manifest})`,
  });
  await store.setRef(signatureRefOf(db.manifest), sig);

  // A key this machine does not trust.
  const other = new FoundrySigner(path.join(home, 'other', 'foundry_ed25519'));
  const otherSigners = path.join(home, 'other_signers');
  await fs.writeFile(otherSigners, `${await other.allowedSignersLine()}\n`);
  const untrusted = await kubedos(['verify', '--artifact', db.qcow2, '--allowed-signers', otherSigners], env);
  expect(untrusted.code).toBe(1);
  expect(untrusted.stderr).toMatch(/the signature of manifest sha256:[0-9a-f]{64} is not valid/);
});

test('verify without SPEC/--image or --artifact, or mixing them, is a usage error that says which form to use', async () => {
  const none = await kubedos(['verify'], env);
  expect(none.code).toBe(2);
  expect(none.stderr).toMatch(/verify needs SPEC and --image NAME/);
  expect(none.stderr).toMatch(/kubedos verify --artifact DIGEST/);
  const mixed = await kubedos(['verify', 'kubedos.yaml', '--artifact', web.raw], env);
  expect(mixed.code).toBe(2);
  expect(mixed.stderr).toMatch(/--artifact checks a stored artifact; it takes no SPEC/);
  const bad = await kubedos(['verify', '--artifact', 'abc'], env);
  expect(bad.code).toBe(2);
  expect(bad.stderr).toMatch(/--artifact "abc" is not a sha256 digest/);
});

test('pin keeps an old publication through gc; unpinned, gc removes it; dry run removes nothing', async () => {
  const pinned = await kubedos(['store', 'pin', oldWeb.manifest, '--reason', 'fleet/web', '--json'], env);
  expect(pinned.code).toBe(0);
  expect(JSON.parse(pinned.stdout).pin).toEqual({ sha256: oldWeb.manifest, reason: 'fleet/web', ref: `pins/fleet/web/${oldWeb.manifest}` });
  const pins = JSON.parse((await kubedos(['store', 'pins', '--json'], env)).stdout);
  expect(pins.pins).toEqual([{ sha256: oldWeb.manifest, reason: 'fleet/web', ref: `pins/fleet/web/${oldWeb.manifest}` }]);

  const keep = JSON.parse((await kubedos(['store', 'gc', '--grace', '0s', '--json'], env)).stdout);
  expect(keep).toMatchObject({ store: 's3://kubedos-cli', dryRun: false, removedBlobs: [], removedRefs: [] });
  expect(await store.has(oldWeb.raw)).toBe(true);

  const unpinned = await kubedos(['store', 'unpin', oldWeb.manifest], env);
  expect(unpinned.stdout).toBe(`unpinned pins/fleet/web/${oldWeb.manifest}\n`);

  const dry = JSON.parse((await kubedos(['store', 'gc', '--dry-run', '--grace', '0s', '--json'], env)).stdout);
  const doomed = dry.removedBlobs.map((b: { sha256: string }) => b.sha256);
  expect(doomed).toEqual(expect.arrayContaining([oldWeb.manifest, oldWeb.raw, oldWeb.qcow2]));
  expect(doomed).not.toContain(web.raw);
  expect(dry.removedRefs).toEqual([signatureRefOf(oldWeb.manifest)]);
  expect(await store.has(oldWeb.raw)).toBe(true);

  // The default grace period protects blobs written within the hour.
  const young = JSON.parse((await kubedos(['store', 'gc', '--json'], env)).stdout);
  expect(young.removedBlobs).toEqual([]);

  const real = await kubedos(['store', 'gc', '--grace', '0s'], env);
  expect(real.code).toBe(0);
  expect(real.stderr).toMatch(/s3:\/\/kubedos-cli: removed \d+ blob\(s\)/);
  expect(await store.has(oldWeb.raw)).toBe(false);
  expect(await store.has(web.raw)).toBe(true);
  expect((await kubedos(['verify', '--artifact', web.raw], env)).code).toBe(0);

  const badGrace = await kubedos(['store', 'gc', '--grace', 'an hour'], env);
  expect(badGrace.code).toBe(2);
  expect(badGrace.stderr).toMatch(/--grace "an hour" is not a duration/);
});

test('a malformed S3 setting is a usage error naming the variable', async () => {
  const r = await kubedos(['store', 'ls'], { ...env, KUBEDOS_S3_ENDPOINT: 'minio:9000' });
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/KUBEDOS_S3_ENDPOINT="minio:9000" is not an http\(s\) URL/);
  expect(r.stderr).toMatch(/hint: e\.g\. http:\/\/127\.0\.0\.1:7070/);
});
