/**
 * Resumable, verified SFTP upload against a real sshd (whose files are on this machine, so the
 * tests can inspect and corrupt them behind the server's back).
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CancelledError, SshConnectError, UploadDigestMismatchError } from '../../src/errors';
import { SshClient, uploadFile, type UploadProgress } from '../../src/ssh';
import { startSshd, type SshdServer } from '../support/sshd';

const MiB = 1024 * 1024;
let sshd: SshdServer;
let client: SshClient;
let local: string;
let data: Buffer;
let digest: string;
let remoteDir: string;
let canary: string;

beforeAll(async () => {
  sshd = await startSshd();
  client = await SshClient.connect(sshd.target());
  data = randomBytes(8 * MiB + 12_345);
  digest = createHash('sha256').update(data).digest('hex');
  local = path.join(sshd.dir, 'disk.img');
  writeFileSync(local, data);
  canary = path.join(sshd.dir, 'canary-upload');
  // A hostile directory name: every remote command that names it must quote it.
  remoteDir = path.join(sshd.dir, `images $(touch ${canary}) 'q' "d"\nnl`);
});
afterAll(async () => {
  await client?.close();
  await sshd?.stop();
});
afterEach(() => {
  expect(existsSync(canary)).toBe(false);
});

function recorder(): { events: UploadProgress[]; first: () => number | undefined } {
  const events: UploadProgress[] = [];
  return { events, first: () => events.find((e) => e.phase === 'upload')?.bytes };
}

/** Upload, stopping the transfer (by `interrupt`) once at least `after` bytes are acknowledged. */
async function interruptedUpload(remote: string, after: number, interrupt: (c: AbortController, s: SshClient) => void, via = client): Promise<unknown> {
  const controller = new AbortController();
  let fired = false;
  return uploadFile(via, local, remote, {
    sha256: digest,
    signal: controller.signal,
    onProgress: (p) => {
      if (!fired && p.phase === 'upload' && p.bytes >= after) {
        fired = true;
        interrupt(controller, via);
      }
    },
  }).then(
    () => new Error('the upload was not interrupted'),
    (err: unknown) => err,
  );
}

test('uploads a multi-MiB file into a hostile path, verified, atomically, and skips it the second time', async () => {
  const remote = path.join(remoteDir, 'fresh.img');
  const progress = recorder();
  const result = await uploadFile(client, local, remote, { sha256: `sha256:${digest}`, onProgress: (p) => progress.events.push(p) });
  expect(result).toEqual({ path: remote, sha256: digest, size: data.length, skipped: false, resumedFrom: 0, restarts: 0 });
  expect(readFileSync(remote).equals(data)).toBe(true);
  expect(existsSync(`${remote}.partial`)).toBe(false);
  expect(statSync(remote).mode & 0o777).toBe(0o644);
  const uploads = progress.events.filter((e) => e.phase === 'upload').map((e) => e.bytes);
  expect(uploads[0]).toBe(0);
  expect(uploads.at(-1)).toBe(data.length);
  expect(uploads).toEqual([...uploads].sort((a, b) => a - b));

  const before = statSync(remote).mtimeMs;
  const again = await uploadFile(client, local, remote, { sha256: digest });
  expect(again).toMatchObject({ skipped: true, size: data.length });
  expect(statSync(remote).mtimeMs).toBe(before);
});

test('an aborted upload resumes from the partial it left, then verifies', async () => {
  const remote = path.join(remoteDir, 'aborted.img');
  const err = await interruptedUpload(remote, 3 * MiB, (controller) => controller.abort());
  expect(err).toBeInstanceOf(CancelledError);
  expect(existsSync(remote)).toBe(false);
  const left = statSync(`${remote}.partial`).size;
  expect(left).toBeGreaterThanOrEqual(3 * MiB);
  expect(left).toBeLessThan(data.length);

  const progress = recorder();
  const result = await uploadFile(client, local, remote, { sha256: digest, onProgress: (p) => progress.events.push(p) });
  expect(progress.first()).toBe(left);
  expect(result).toMatchObject({ skipped: false, resumedFrom: left, restarts: 0 });
  expect(readFileSync(remote).equals(data)).toBe(true);
  expect(existsSync(`${remote}.partial`)).toBe(false);
});

test('a connection killed mid-upload leaves a partial that a new connection resumes', async () => {
  const remote = path.join(remoteDir, 'killed.img');
  const doomed = await SshClient.connect(sshd.target());
  const err = await interruptedUpload(remote, 2 * MiB, (_, c) => void c.close(), doomed);
  expect(err).toBeInstanceOf(SshConnectError);
  // The server may still write what it had received when the link went: wait until it is done.
  let left = -1;
  for (let size = statSync(`${remote}.partial`).size; size !== left; size = statSync(`${remote}.partial`).size) {
    left = size;
    await sleep(300);
  }
  expect(left).toBeGreaterThan(0);
  expect(left).toBeLessThan(data.length);

  const fresh = await SshClient.connect(sshd.target());
  try {
    const result = await uploadFile(fresh, local, remote, { sha256: digest });
    expect(result.resumedFrom).toBe(left);
    expect(readFileSync(remote).equals(data)).toBe(true);
  } finally {
    await fresh.close();
  }
});

test('a corrupted or oversized partial is detected and the upload starts over', async () => {
  const remote = path.join(remoteDir, 'corrupt.img');
  mkdirSync(remoteDir, { recursive: true });
  const bad = Buffer.from(data.subarray(0, 2 * MiB));
  bad[1000] ^= 0xff;
  writeFileSync(`${remote}.partial`, bad);
  const progress = recorder();
  const result = await uploadFile(client, local, remote, { sha256: digest, onProgress: (p) => progress.events.push(p) });
  expect(result).toMatchObject({ resumedFrom: 0, restarts: 1 });
  expect(progress.first()).toBe(0);
  expect(readFileSync(remote).equals(data)).toBe(true);

  const oversized = path.join(remoteDir, 'oversized.img');
  writeFileSync(`${oversized}.partial`, Buffer.concat([data, Buffer.from('trailing junk')]));
  expect(await uploadFile(client, local, oversized, { sha256: digest })).toMatchObject({ resumedFrom: 0, restarts: 1 });
  expect(readFileSync(oversized).equals(data)).toBe(true);
});

/** Upload to `remote`, flipping a byte of the remote partial's first MiB (behind sshd's back) once 4 MiB are sent. */
async function tamperedUpload(remote: string): Promise<unknown> {
  let tampered = false;
  return uploadFile(client, local, remote, {
    sha256: digest,
    onProgress: (p) => {
      if (!tampered && p.phase === 'upload' && p.bytes > 4 * MiB) {
        tampered = true;
        const partial = readFileSync(`${remote}.partial`).subarray(0, 1 * MiB);
        partial[10] ^= 0xff;
        writeFileSync(`${remote}.partial`, partial, { flag: 'r+' });
      }
    },
  }).catch((err: unknown) => err);
}

test('a partial corrupted during the transfer fails remote verification: a resumed upload is redone, a fresh one refused', async () => {
  mkdirSync(remoteDir, { recursive: true });
  // Resumed: the prefix check passed before the damage, so only the final remote sha256 can catch it.
  const resumed = path.join(remoteDir, 'tampered-resumed.img');
  writeFileSync(`${resumed}.partial`, data.subarray(0, 1 * MiB));
  expect(await tamperedUpload(resumed)).toMatchObject({ resumedFrom: 0, restarts: 1 });
  expect(readFileSync(resumed).equals(data)).toBe(true);

  const fresh = path.join(remoteDir, 'tampered-fresh.img');
  const err = (await tamperedUpload(fresh)) as UploadDigestMismatchError;
  expect(err).toBeInstanceOf(UploadDigestMismatchError);
  expect(err.message).toContain(`${client.label}:${fresh}.partial hashes to sha256:`);
  expect(err.expected).toBe(digest);
  expect(err.actual).not.toBe(digest);
  expect(existsSync(fresh)).toBe(false);
  expect(existsSync(`${fresh}.partial`)).toBe(false);
});

test('a digest mismatch is refused: nothing is put in place and a stale file stays untouched', async () => {
  const remote = path.join(remoteDir, 'mismatch.img');
  const wrong = createHash('sha256').update('something else').digest('hex');
  const err = (await uploadFile(client, local, remote, { sha256: wrong }).catch((e: unknown) => e)) as UploadDigestMismatchError;
  expect(err).toBeInstanceOf(UploadDigestMismatchError);
  expect(err.expected).toBe(wrong);
  expect(err.actual).toBe(digest);
  expect(err.message).toContain(`local file ${local}`);
  expect(existsSync(remote)).toBe(false);
  expect(existsSync(`${remote}.partial`)).toBe(false);

  // A stale file of the same size at the destination is replaced, never mistaken for the artifact.
  const stale = path.join(remoteDir, 'stale.img');
  writeFileSync(stale, Buffer.alloc(data.length, 7));
  expect(await uploadFile(client, local, stale, { sha256: digest })).toMatchObject({ skipped: false });
  expect(readFileSync(stale).equals(data)).toBe(true);
  await expect(uploadFile(client, local, path.join(remoteDir, 'x.img'), { sha256: 'abc' })).rejects.toThrow(/64 hex digits/);
});

afterAll(() => rmSync(remoteDir, { recursive: true, force: true }));
