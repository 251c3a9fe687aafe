/**
 * The S3 backend against a real S3-compatible server (versitygw, POSIX backend, loopback):
 * multi-GiB sparse round trip, resume after an interrupted upload, tampering detected on
 * download, concurrent publishers of one digest, one object per digest.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HeadObjectCommand, ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { CancelledError, DigestMismatchError } from '../../src/errors';
import { blobKey, choosePartSize, compositeChecksum, type S3Store, s3ConfigFromEnv } from '../../src/store/s3';
import type { UploadCheckpoint } from '../../src/store/store';
import { sha256OfFile } from '../../src/store/transfer';
import { countRequests, startS3Server, type S3TestServer } from '../support/s3-server';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

// Real uploads on a shared 2-core machine: generous, not the 2-minute default of the main config.
jest.setTimeout(300_000);

let server: S3TestServer;
let tmp: string;
const stores: S3Store[] = [];

function newStore(partSize = 5 * MiB): S3Store {
  const s = server.store({ partSize });
  stores.push(s);
  return s;
}

/** A file of pseudo-random bytes (deterministic from the seed). */
async function randomFile(name: string, size: number, seed: string): Promise<string> {
  const file = path.join(tmp, name);
  const handle = await fs.open(file, 'w');
  let counter = 0;
  for (let off = 0; off < size; ) {
    const block = Buffer.alloc(Math.min(MiB, size - off));
    for (let i = 0; i < block.length; i += 32) createHash('sha256').update(`${seed}:${counter++}`).digest().copy(block, i);
    await handle.write(block, 0, block.length, off);
    off += block.length;
  }
  await handle.close();
  return file;
}

/** Start uploading file and kill the upload once `parts` parts are stored; the last checkpoint. */
async function interruptAfter(store: S3Store, file: string, parts: number): Promise<UploadCheckpoint> {
  const controller = new AbortController();
  let last: UploadCheckpoint | undefined;
  await expect(
    store.putFile(file, {
      signal: controller.signal,
      onCheckpoint: (cp) => {
        last = cp;
        if (cp.parts.length === parts) controller.abort();
      },
    }),
  ).rejects.toBeInstanceOf(CancelledError);
  return last!;
}

async function pendingUploads(store: S3Store): Promise<number> {
  const res = await store.client.send(new ListMultipartUploadsCommand({ Bucket: server.bucket }));
  return res.Uploads?.length ?? 0;
}

beforeAll(async () => {
  server = await startS3Server();
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-s3-test-'));
});

afterAll(async () => {
  for (const s of stores) s.destroy();
  await server?.stop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

test('configuration from the environment', () => {
  expect(s3ConfigFromEnv({})).toBeUndefined();
  expect(
    s3ConfigFromEnv({ KUBEDOS_S3_BUCKET: 'b', KUBEDOS_S3_ENDPOINT: 'http://127.0.0.1:7070', AWS_ACCESS_KEY_ID: 'a', AWS_SECRET_ACCESS_KEY: 's' }),
  ).toEqual({ bucket: 'b', endpoint: 'http://127.0.0.1:7070', region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'a', secretAccessKey: 's' } });
  expect(s3ConfigFromEnv({ KUBEDOS_S3_BUCKET: 'b', KUBEDOS_S3_REGION: 'eu-west-1', KUBEDOS_S3_PATH_STYLE: 'false' })).toMatchObject({ region: 'eu-west-1', forcePathStyle: false, credentials: undefined });
  expect(() => s3ConfigFromEnv({ KUBEDOS_S3_BUCKET: 'b', AWS_ACCESS_KEY_ID: 'a' })).toThrow(/AWS_SECRET_ACCESS_KEY/);
  expect(() => s3ConfigFromEnv({ KUBEDOS_S3_BUCKET: 'b', KUBEDOS_S3_PATH_STYLE: 'maybe' })).toThrow(/KUBEDOS_S3_PATH_STYLE/);
  expect(choosePartSize(3 * GiB, 64 * MiB)).toBe(64 * MiB);
  expect(choosePartSize(1024 * GiB, 64 * MiB)).toBe(105 * MiB); // 10 000 parts at most
});

test('bytes, refs and listing round-trip; the same digest twice is stored once', async () => {
  const store = newStore();
  const counts = countRequests(store);
  const a = await store.putBytes('hello');
  const again = await store.putBytes('hello');
  expect(again).toEqual(a);
  expect(counts.get('PutObjectCommand')).toBe(1);
  expect((await store.getBytes(a.sha256)).toString()).toBe('hello');
  expect(store.localPath()).toBeUndefined();

  const file = await randomFile('twice.bin', 12 * MiB, 'twice');
  const first = await store.putFile(file);
  const second = await store.putFile(file);
  expect(first).toMatchObject({ existed: false, partsUploaded: 3 });
  expect(second).toMatchObject({ sha256: first.sha256, existed: true });
  expect(counts.get('UploadPartCommand')).toBe(3);
  expect((await store.listBlobs()).filter((b) => b.sha256 === first.sha256)).toHaveLength(1);

  await store.setRef('images/web/latest', a.sha256);
  await store.setRef('pins/keep-me', first.sha256);
  expect(await store.getRef('images/web/latest')).toBe(a.sha256);
  expect(await store.getRef('images/web/none')).toBeUndefined();
  expect(await store.listRefs('images/')).toEqual(['images/web/latest']);
  await store.deleteRef('images/web/latest');
  await store.deleteRef('pins/keep-me');
  expect(await store.listRefs()).toEqual([]);
});

test('a 3 GiB sparse image round-trips, verified, and stays sparse', async () => {
  const file = path.join(tmp, 'sparse.img');
  const handle = await fs.open(file, 'w');
  await handle.truncate(3 * GiB);
  // A few data regions (a partition table, a filesystem in the middle, something at the end).
  for (const [offset, seed] of [[0, 'mbr'], [1536 * MiB + 12345, 'middle'], [3 * GiB - 2 * MiB, 'tail']] as const) {
    const block = Buffer.alloc(MiB);
    for (let i = 0; i < block.length; i += 32) createHash('sha256').update(`${seed}:${i}`).digest().copy(block, i);
    await handle.write(block, 0, block.length, offset);
  }
  await handle.close();

  const store = newStore(64 * MiB);
  const started = Date.now();
  const expected = await sha256OfFile(file);
  const checkpoints: UploadCheckpoint[] = [];
  const put = await store.putFile(file, { onCheckpoint: (cp) => checkpoints.push(cp) });
  const uploadMs = Date.now() - started;
  expect(put).toMatchObject({ sha256: expected.sha256, size: 3 * GiB, existed: false, partsUploaded: 48, partsReused: 0 });
  expect(checkpoints.at(-1)!.parts).toHaveLength(48);

  // The server's composite checksum is the one the parts add up to.
  const head = await store.client.send(new HeadObjectCommand({ Bucket: server.bucket, Key: blobKey(put.sha256), ChecksumMode: 'ENABLED' }));
  expect(head.ContentLength).toBe(3 * GiB);
  if (head.ChecksumSHA256) {
    const partDigests = checkpoints.at(-1)!.parts.map((p) => Buffer.from(p.checksumSHA256, 'base64'));
    expect(head.ChecksumSHA256).toBe(compositeChecksum(partDigests));
  }

  const dest = path.join(tmp, 'download', 'sparse.img');
  const t1 = Date.now();
  const got = await store.getFile(put.sha256, dest);
  const downloadMs = Date.now() - t1;
  expect(got).toEqual({ sha256: expected.sha256, size: 3 * GiB });
  const st = await fs.stat(dest);
  expect(st.size).toBe(3 * GiB);
  expect(st.blocks * 512).toBeLessThan(64 * MiB); // holes stayed holes
  console.log(`3 GiB sparse: hash+upload ${uploadMs} ms, download+verify ${downloadMs} ms`);
  await store.deleteBlob(put.sha256);
  await fs.rm(dest);
  await fs.rm(file);
}, 600_000);

test('an interrupted upload resumes from its checkpoint and sends only the missing parts', async () => {
  const file = await randomFile('resume.bin', 40 * MiB + 123, 'resume'); // 9 parts of 5 MiB
  const expected = await sha256OfFile(file);

  const first = newStore(5 * MiB);
  const firstCounts = countRequests(first);
  const last = await interruptAfter(first, file, 4); // killed after 4 parts
  expect(firstCounts.get('UploadPartCommand')).toBe(4);
  expect(last.parts.map((p) => p.partNumber)).toEqual([1, 2, 3, 4]);
  expect(await first.has(expected.sha256)).toBe(false); // nothing visible under the digest yet

  // A new process (new client), given the last checkpoint (as from heartbeat details, via JSON).
  const second = newStore(5 * MiB);
  const counts = countRequests(second);
  const resumed = await second.putFile(file, { resume: JSON.parse(JSON.stringify(last)) as UploadCheckpoint });
  expect(resumed).toMatchObject({ sha256: expected.sha256, size: expected.size, existed: false, partsUploaded: 5, partsReused: 4 });
  expect(counts.get('ListPartsCommand')).toBe(1);
  expect(counts.get('UploadPartCommand')).toBe(5);
  expect(counts.get('CreateMultipartUploadCommand')).toBeUndefined();
  expect(await pendingUploads(second)).toBe(0);
  expect((await second.verifyBlob(expected.sha256)).size).toBe(expected.size);

  // A stale checkpoint (upload already completed) does not break a later put.
  const again = await second.putFile(file, { resume: last });
  expect(again.existed).toBe(true);
});

test('a checkpoint whose parts no longer match the file is not trusted', async () => {
  const file = await randomFile('changed.bin', 12 * MiB, 'v1');
  const store = newStore(5 * MiB);
  const last = await interruptAfter(store, file, 1);
  // Same file name, other content: another digest, another key; the old upload is dropped.
  await randomFile('changed.bin', 12 * MiB, 'v2');
  const put = await store.putFile(file, { resume: last });
  expect(put).toMatchObject({ existed: false, partsUploaded: 3, partsReused: 0 });
  expect(await pendingUploads(store)).toBe(0);
});

test('a flipped byte on the server is detected on download; the destination is not written', async () => {
  const store = newStore(5 * MiB);
  const small = await store.putBytes('precious bytes');
  const big = await store.putFile(await randomFile('flip.bin', 11 * MiB, 'flip'));
  for (const { sha256 } of [small, big]) {
    const backing = server.objectFile(blobKey(sha256));
    const handle = await fs.open(backing, 'r+');
    const one = Buffer.alloc(1);
    await handle.read(one, 0, 1, 7);
    one[0] ^= 0x01;
    await handle.write(one, 0, 1, 7);
    await handle.close();

    const dest = path.join(tmp, `flipped-${sha256}`);
    const err = await store.getFile(sha256, dest).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DigestMismatchError);
    expect((err as DigestMismatchError).expected).toBe(sha256);
    expect((err as Error).message).toContain(`expected sha256:${sha256}`);
    await expect(fs.access(dest)).rejects.toThrow();
    expect((await fs.readdir(tmp)).filter((n) => n.includes('kubedos-') && n.endsWith('.tmp'))).toEqual([]);
    await expect(store.verifyBlob(sha256)).rejects.toBeInstanceOf(DigestMismatchError);
    await store.deleteBlob(sha256);
  }
  await expect(store.getBytes(small.sha256)).rejects.toThrow(/not in s3:\/\//);
});

test('two concurrent publishers of one digest both succeed and leave one object', async () => {
  const file = await randomFile('concurrent.bin', 23 * MiB, 'concurrent');
  const a = newStore(5 * MiB);
  const b = newStore(5 * MiB);
  const [ra, rb] = await Promise.all([a.putFile(file), b.putFile(file)]);
  expect(ra.sha256).toBe(rb.sha256);
  const listed = (await a.listBlobs()).filter((x) => x.sha256 === ra.sha256);
  expect(listed).toHaveLength(1);
  expect(listed[0]!.size).toBe(23 * MiB);
  expect(await pendingUploads(a)).toBe(0);
  await a.verifyBlob(ra.sha256);
  // And two small ones at once.
  const [sa, sb] = await Promise.all([a.putBytes('same small blob'), b.putBytes('same small blob')]);
  expect(sa).toEqual(sb);
  expect((await b.getBytes(sa.sha256)).toString()).toBe('same small blob');
});
