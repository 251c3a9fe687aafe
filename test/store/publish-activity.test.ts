/**
 * The publishBuild activity against a real S3 server (versitygw): an attempt killed mid-upload is
 * resumed by the retry from its heartbeat details (only the missing parts are sent, nothing is
 * visible before the end), and a repeat finds the finished publication and sends nothing.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createPublishActivities, type PublishBuildResult, type PublishHeartbeat } from '../../activities/publish';
import type { BuildManifest } from '../../src/foundry/manifest';
import { LocalStore } from '../../src/store/local';
import type { S3Store } from '../../src/store/s3';
import { FoundrySigner } from '../../src/store/signing';
import { verifyArtifact } from '../../src/store/verify';
import { countRequests, startS3Server, type S3TestServer } from '../support/s3-server';

const MiB = 1024 * 1024;
jest.setTimeout(180_000);

let server: S3TestServer;
let tmp: string;
const stores: S3Store[] = [];

beforeAll(async () => {
  server = await startS3Server('kubedos-publish');
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-publish-act-'));
});

afterAll(async () => {
  for (const s of stores) s.destroy();
  await server?.stop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

/** Deterministic pseudo-random bytes (incompressible, no zero blocks). */
function randomBytes(size: number, seed: string): Buffer {
  const out = Buffer.alloc(size);
  for (let i = 0, n = 0; i < size; i += 32, n++) createHash('sha256').update(`${seed}:${n}`).digest().copy(out, i);
  return out;
}

/** What buildImage leaves behind on the build host: the artifact, the build manifest and the lock, staged. */
async function stageBuild(staging: LocalStore, name: string, size: number) {
  const bytes = randomBytes(size, name);
  const file = path.join(tmp, `${name}.raw`);
  await fs.writeFile(file, bytes);
  const put = await staging.putFile(file);
  const manifest: BuildManifest = {
    schema: 'kubedos.build-manifest/v1',
    image: { name, role: 'worker', hostname: name },
    inputDigest: 'i'.repeat(64), layerDigest: 'l'.repeat(64), lockDigest: 'k'.repeat(64),
    sourceDateEpoch: 1_700_000_000, diskSizeBytes: size,
    artifacts: [{ format: 'raw', file: `${name}.raw`, sha256: put.sha256, size }],
  };
  const lockText = `${JSON.stringify({ lockVersion: 1, suite: 'bookworm', architecture: 'amd64', baseInputs: 'x', packages: [] }, null, 2)}\n`;
  return {
    sha256: put.sha256,
    input: {
      image: name,
      manifestDigest: (await staging.putBytes(`${JSON.stringify(manifest, null, 2)}\n`)).sha256,
      lockBlob: (await staging.putBytes(lockText)).sha256,
      specDigest: 's'.repeat(64),
    },
  };
}

const workflowExecution = { workflowId: 'kubedos-manufacture-web-test', runId: 'run-1' };

test('a publish killed mid-upload resumes from its heartbeat on retry; a repeat finds it published and sends nothing', async () => {
  const store = server.store({ partSize: 5 * MiB });
  stores.push(store);
  const counts = countRequests(store);
  const staging = new LocalStore(path.join(tmp, 'staging'));
  const signer = new FoundrySigner(path.join(tmp, 'keys', 'foundry_ed25519'));
  const { publishBuild } = createPublishActivities({ store, staging, signer });
  const { sha256, input } = await stageBuild(staging, 'web', 18 * MiB); // 4 parts of 5 MiB

  // Attempt 1: the worker dies (here: cancelled) once the server has acknowledged two parts.
  const first = new MockActivityEnvironment({ workflowExecution, attempt: 1 });
  const beats: PublishHeartbeat[] = [];
  first.on('heartbeat', (d: PublishHeartbeat) => {
    beats.push(structuredClone(d));
    if ((d.uploads['web.raw']?.parts.length ?? 0) === 2) first.cancel();
  });
  await expect(first.run(publishBuild, input)).rejects.toThrow(/cancel/i);
  const last = beats.at(-1)!;
  expect(last.uploads['web.raw']).toMatchObject({ key: `blobs/sha256/${sha256}`, partSize: 5 * MiB, parts: [{ partNumber: 1 }, { partNumber: 2 }] });
  expect(last.total).toBe(18 * MiB);
  expect(beats.some((b) => /uploading web\.raw \d+%/.test(b.step))).toBe(true);
  // Nothing of the publication is visible, and the object is not complete.
  expect(await store.getRef('images/web/latest')).toBeUndefined();
  expect(await store.has(sha256)).toBe(false);

  // Attempt 2 (Temporal hands the retry the last heartbeat details): only parts 3 and 4 are sent.
  counts.clear();
  const second = new MockActivityEnvironment({ workflowExecution, attempt: 2, heartbeatDetails: last });
  const resumedBeats: PublishHeartbeat[] = [];
  second.on('heartbeat', (d: PublishHeartbeat) => resumedBeats.push(structuredClone(d)));
  const result: PublishBuildResult = await second.run(publishBuild, input);
  expect(result).toMatchObject({ ref: 'images/web/latest', reused: false, artifacts: [{ sha256, existed: false, partsReused: 2, partsUploaded: 2, location: `s3://kubedos-publish/blobs/sha256/${sha256}` }] });
  expect(counts.get('UploadPartCommand')).toBe(2);
  expect(counts.get('CreateMultipartUploadCommand') ?? 0).toBe(0);
  expect(resumedBeats.at(-1)).toMatchObject({ step: 'published', completed: ['web.raw'], bytes: 18 * MiB, uploads: {} });
  expect(await store.getRef('images/web/latest')).toBe(result.publicationDigest);

  // The publication verifies with the Foundry's key, from the S3 store.
  const allowedSigners = path.join(tmp, 'allowed_signers');
  await fs.writeFile(allowedSigners, `${await signer.allowedSignersLine()}\n`);
  await expect(verifyArtifact(store, sha256, { allowedSigners })).resolves.toMatchObject({ manifest: result.publicationDigest, refs: ['images/web/latest'] });

  // A repeat (another retry, or the workflow running again): found, nothing written.
  counts.clear();
  const again: PublishBuildResult = await new MockActivityEnvironment({ workflowExecution, attempt: 3 }).run(publishBuild, input);
  expect(again).toMatchObject({ reused: true, publicationDigest: result.publicationDigest, signatureDigest: result.signatureDigest });
  for (const write of ['PutObjectCommand', 'UploadPartCommand', 'CreateMultipartUploadCommand']) expect(counts.get(write) ?? 0).toBe(0);
});

test('a checkpoint of an upload the server no longer has starts over cleanly', async () => {
  const store = server.store({ partSize: 5 * MiB });
  stores.push(store);
  const staging = new LocalStore(path.join(tmp, 'staging-2'));
  const { publishBuild } = createPublishActivities({ store, staging, signer: new FoundrySigner(path.join(tmp, 'keys', 'foundry_ed25519')) });
  const { sha256, input } = await stageBuild(staging, 'db', 11 * MiB);
  const stale: PublishHeartbeat = {
    step: 'uploading db.raw 45%', completed: [], bytes: 5 * MiB, total: 11 * MiB,
    uploads: { 'db.raw': { uploadId: 'no-such-upload', key: `blobs/sha256/${sha256}`, partSize: 5 * MiB, parts: [{ partNumber: 1, etag: '"x"', checksumSHA256: 'AAAA' }] } },
  };
  const result: PublishBuildResult = await new MockActivityEnvironment({ workflowExecution, heartbeatDetails: stale }).run(publishBuild, input);
  expect(result.artifacts[0]).toMatchObject({ existed: false, partsReused: 0, partsUploaded: 3 });
  expect(await store.has(sha256)).toBe(true);
});
