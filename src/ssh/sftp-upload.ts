/**
 * Putting a local file on an SSH host by digest: resumable, verified, atomic, idempotent.
 *
 * Bytes go to `<path>.partial`. An interrupted upload resumes from the partial's size once the
 * partial is proven to be a prefix of the local file (its remote sha256 equals the local prefix's);
 * a partial that is not is discarded. The finished partial must hash remotely (`sha256sum`, run
 * from argv) to the expected digest before it is renamed into place, so `<path>` only ever holds
 * the verified bytes. A `<path>` that already has the digest is left alone.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import type { SFTPWrapper } from 'ssh2';
import { CancelledError, InvalidArgvError, KubedosError, SshConnectError, UploadDigestMismatchError } from '../errors';
import { logger } from '../log';
import type { SshClient } from './client';

export interface UploadProgress {
  /** `upload` while bytes move; `verify` while the host hashes the file (repeated, for heartbeats). */
  phase: 'upload' | 'verify';
  /** Bytes of the file present on the host; the first report of an upload is where it resumed. */
  bytes: number;
  total: number;
}

export interface UploadOptions {
  /** The file's expected sha256: 64 hex digits, optionally prefixed `sha256:`. */
  sha256: string;
  signal?: AbortSignal;
  onProgress?: (progress: UploadProgress) => void;
  /** Mode of the remote file. @default 0o644 */
  mode?: number;
}

export interface UploadResult {
  path: string;
  sha256: string;
  size: number;
  /** The file was already in place with the right digest; nothing was sent. */
  skipped: boolean;
  /** Offset the upload resumed from (0 for a fresh upload). */
  resumedFrom: number;
  /** Times the upload started over from zero after a bad partial or a failed verification. */
  restarts: number;
}

const READ_CHUNK = 1024 * 1024;
/** One SFTP write request: 32 KiB, the size every SFTP server must accept (and OpenSSH's sftp uses). */
const WRITE_SIZE = 32 * 1024;
/** Writes in flight (2 MiB): keeps the pipe full over a slow link instead of one round trip per write. */
const WINDOW = 64;
const VERIFY_HEARTBEAT_MS = 5000;

/** Uploads of one remote path within this process run one at a time (they share the partial). */
const inFlight = new Map<string, Promise<unknown>>();

function sftpError(label: string, op: string, target: string, err: Error): KubedosError {
  const detail = `SFTP ${op} ${target} failed: ${err.message}`;
  if (/No response from server|closed|not connected/i.test(err.message)) return new SshConnectError(label, detail, { cause: err });
  return new KubedosError(`${label}: ${detail}`, 'check that the remote user may write there and the disk has room', { cause: err });
}

function isNoSuchFile(err: unknown): boolean {
  return (err as { cause?: { code?: unknown } })?.cause?.code === 2; // SSH_FX_NO_SUCH_FILE
}

function normaliseDigest(digest: string): string {
  const hex = digest.replace(/^sha256:/, '').toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new TypeError(`expected a sha256 digest (64 hex digits), got ${JSON.stringify(digest)}`);
  return hex;
}

/** Feed bytes [start, end) of a local file into `hash`. */
async function hashRange(file: string, start: number, end: number, hash: Hash, signal: AbortSignal | undefined): Promise<void> {
  if (end <= start) return;
  for await (const chunk of createReadStream(file, { start, end: end - 1, highWaterMark: READ_CHUNK })) {
    if (signal?.aborted) throw new CancelledError(`hashing ${file}`);
    hash.update(chunk as Buffer);
  }
}

class Uploader {
  private readonly label: string;
  private readonly what: string;
  /** Set once the SFTP session has closed: ssh2 never answers a request made after that. */
  private lost?: KubedosError;
  private readonly waiting = new Set<(err: Error) => void>();
  private readonly onSftpClose = (): void => {
    this.lost = new SshConnectError(this.label, `the SFTP session closed during the ${this.what}`);
    for (const fail of this.waiting) fail(this.lost);
    this.waiting.clear();
  };

  constructor(
    private readonly client: SshClient,
    private readonly sftp: SFTPWrapper,
    private readonly local: string,
    private readonly remote: string,
    private readonly total: number,
    private readonly options: UploadOptions,
  ) {
    this.label = client.label;
    this.what = `upload of ${local} to ${client.label}:${remote}`;
    sftp.once('close', this.onSftpClose);
  }

  dispose(): void {
    this.sftp.removeListener('close', this.onSftpClose);
  }

  /** One SFTP request as a promise; rejects at once if the session is (or goes) away. */
  private call<T>(op: string, target: string, request: (cb: (err: Error | null | undefined, value?: T) => void) => void): Promise<T> {
    if (this.lost) return Promise.reject(this.lost);
    return new Promise<T>((resolve, reject) => {
      const fail = (err: Error): void => reject(err);
      this.waiting.add(fail);
      const done = (err: Error | null | undefined, value?: T): void => {
        this.waiting.delete(fail);
        if (err) reject(sftpError(this.label, op, target, err));
        else resolve(value as T);
      };
      try {
        request(done);
      } catch (err) {
        done(err as Error);
      }
    });
  }

  /** Size of a remote regular file, or undefined when there is none. */
  async size(file: string): Promise<number | undefined> {
    try {
      const stats = await this.call<{ size: number; isFile(): boolean }>('stat', file, (cb) => this.sftp.stat(file, cb));
      return stats.isFile() ? stats.size : undefined;
    } catch (err) {
      if (isNoSuchFile(err)) return undefined;
      throw err;
    }
  }

  private progress(phase: UploadProgress['phase'], bytes: number): void {
    this.options.onProgress?.({ phase, bytes, total: this.total });
  }

  /** sha256 of a remote file, computed on the host by `sha256sum` run from argv. */
  async remoteSha256(file: string): Promise<string> {
    const beat = setInterval(() => this.progress('verify', this.total), VERIFY_HEARTBEAT_MS);
    try {
      const { stdout } = await this.client.run(['sha256sum', '--', file], { signal: this.options.signal });
      // GNU sha256sum prefixes the line with `\` when it escapes a name (newline, backslash).
      const match = /^\\?([0-9a-f]{64}) /.exec(stdout);
      if (!match) throw new KubedosError(`${this.label}: unexpected sha256sum output for ${file}: ${JSON.stringify(stdout.slice(0, 200))}`, 'the host needs GNU coreutils sha256sum');
      return match[1]!;
    } finally {
      clearInterval(beat);
    }
  }

  /**
   * Write local bytes [offset, total) into the remote partial, `WINDOW` writes in flight. Each
   * write is one SFTP request, and sftp-server handles requests in order, so however the transfer
   * stops the partial is a contiguous prefix (no holes), which is what makes resuming pay off.
   * On any failure the writes still in flight are drained first: once this rejects, nothing of
   * ours touches the partial any more.
   */
  async send(partial: string, offset: number, hash: Hash): Promise<void> {
    const { sftp, options } = this;
    const handle = await this.call<Buffer>('open', partial, (cb) =>
      // 'r+' keeps the verified prefix; 'w' creates or truncates.
      sftp.open(partial, offset > 0 ? 'r+' : 'w', { mode: options.mode ?? 0o644 }, cb),
    );
    const close = (): Promise<void> => this.call('close', partial, (cb) => sftp.close(handle, cb));
    let done = offset;
    this.progress('upload', done);
    const pending = new Set<Promise<void>>();
    let failure: unknown;
    const write = (piece: Buffer, at: number): void => {
      const request = this.call<void>('write', partial, (cb) => sftp.write(handle, piece, 0, piece.length, at, cb)).then(() => {
        done += piece.length;
        this.progress('upload', done);
      });
      pending.add(request);
      request.then(
        () => pending.delete(request),
        (err) => {
          pending.delete(request);
          failure ??= err;
        },
      );
    };
    try {
      let position = offset;
      for await (const data of createReadStream(this.local, { start: offset, highWaterMark: READ_CHUNK })) {
        const chunk = data as Buffer;
        hash.update(chunk);
        for (let at = 0; at < chunk.length; at += WRITE_SIZE) {
          if (options.signal?.aborted) throw new CancelledError(this.what);
          if (failure) throw failure;
          write(chunk.subarray(at, at + WRITE_SIZE), position + at);
          if (pending.size >= WINDOW) await Promise.race(pending);
        }
        position += chunk.length;
      }
      await Promise.all(pending);
      // A write that failed while the loop was reading is no longer in `pending`.
      if (failure) throw failure;
      if (options.signal?.aborted) throw new CancelledError(this.what);
      if (position !== this.total) throw new KubedosError(`${this.local} changed size during the upload (${this.total} → ${position} bytes)`, 'do not modify a file while it is uploaded');
      // Durable before it is renamed into place (OpenSSH fsync@openssh.com; skipped where absent).
      await this.call('fsync', partial, (cb) => sftp.ext_openssh_fsync(handle, cb)).catch((err: Error) => {
        if (!/not support/i.test(String((err as { cause?: Error }).cause?.message ?? err.message))) throw err;
      });
    } catch (err) {
      await Promise.allSettled(pending);
      await close().catch(() => undefined); // the partial stays for the next resume either way
      throw err;
    }
    await close();
  }

  async rename(from: string, to: string): Promise<void> {
    try {
      // posix-rename@openssh.com is rename(2): atomic and replaces `to`; plain SFTP rename refuses to.
      await this.call('rename', from, (cb) => this.sftp.ext_openssh_rename(from, to, cb));
    } catch (err) {
      if (!/not support/i.test(String((err as { cause?: Error }).cause?.message ?? ''))) throw err;
      await this.client.run(['mv', '-f', '--', from, to], { signal: this.options.signal });
    }
  }

  async remove(file: string): Promise<void> {
    await this.call('remove', file, (cb) => this.sftp.unlink(file, cb)).catch((err) => {
      if (!isNoSuchFile(err)) throw err;
    });
  }
}

/**
 * Upload `localPath` to `remotePath` on the host of `client`, resuming an interrupted upload and
 * verifying the sha256 on the host before the file appears at `remotePath`. Rejects with
 * UploadDigestMismatchError (nothing put in place), CancelledError, SshConnectError or
 * RemoteCommandFailedError.
 */
export async function uploadFile(client: SshClient, localPath: string, remotePath: string, options: UploadOptions): Promise<UploadResult> {
  if (remotePath === '' || remotePath.endsWith('/')) throw new InvalidArgvError(`remote path ${JSON.stringify(remotePath)} must name a file`);
  if (remotePath.includes('\0')) throw new InvalidArgvError('remote path contains a NUL byte');
  const expected = normaliseDigest(options.sha256);
  const key = `${client.label}\0${remotePath}`;
  const previous = inFlight.get(key) ?? Promise.resolve();
  const mine = previous.catch(() => undefined).then(() => upload(client, localPath, remotePath, expected, options));
  inFlight.set(key, mine);
  try {
    return await mine;
  } finally {
    if (inFlight.get(key) === mine) inFlight.delete(key);
  }
}

async function upload(client: SshClient, local: string, remote: string, expected: string, options: UploadOptions): Promise<UploadResult> {
  if (options.signal?.aborted) throw new CancelledError(`upload of ${local}`);
  const total = (await fs.stat(local)).size;
  const up = new Uploader(client, await client.sftp(), local, remote, total, options);
  try {
    return await transfer(up, client, local, remote, total, expected, options);
  } finally {
    up.dispose();
  }
}

async function transfer(up: Uploader, client: SshClient, local: string, remote: string, total: number, expected: string, options: UploadOptions): Promise<UploadResult> {
  const where = `${client.label}:${remote}`;
  const log = logger.child({ target: client.label, path: remote });

  if ((await up.size(remote)) === total && (await up.remoteSha256(remote)) === expected) {
    options.onProgress?.({ phase: 'upload', bytes: total, total });
    log.debug({}, 'upload skipped: already in place');
    return { path: remote, sha256: expected, size: total, skipped: true, resumedFrom: total, restarts: 0 };
  }

  const dir = path.posix.dirname(remote);
  if (dir !== '.' && dir !== '/') await client.run(['mkdir', '-p', '--', dir], { signal: options.signal });
  const partial = `${remote}.partial`;
  let restarts = 0;
  let resumedFrom = 0;
  let partialSize = (await up.size(partial)) ?? 0;

  // Two rounds at most: a resumed upload that fails verification is redone once from zero.
  for (let round = 0; ; round++) {
    let hash = createHash('sha256');
    let offset = 0;
    if (partialSize > 0 && partialSize <= total) {
      const [remotePrefix] = await Promise.all([up.remoteSha256(partial), hashRange(local, 0, partialSize, hash, options.signal)]);
      if (remotePrefix === hash.copy().digest('hex')) {
        offset = partialSize;
      } else {
        log.warn({ partialSize }, 'the remote partial is not a prefix of the file: starting over');
        hash = createHash('sha256');
        restarts++;
      }
    } else if (partialSize > total) {
      restarts++;
    }
    resumedFrom = offset;

    await up.send(partial, offset, hash);
    const localDigest = hash.digest('hex');
    if (localDigest !== expected) {
      await up.remove(partial);
      throw new UploadDigestMismatchError(
        `local file ${local}`,
        expected,
        localDigest,
        'the file to upload is not the artifact it is meant to be: fetch it again from the store by digest',
      );
    }
    const remoteDigest = await up.remoteSha256(partial);
    if (remoteDigest === expected) break;
    await up.remove(partial);
    if (round >= 1 || offset === 0) {
      throw new UploadDigestMismatchError(where + '.partial', expected, remoteDigest, 'the bytes were changed in transit or on the host (disk, another writer); nothing was put in place');
    }
    log.warn({ resumedFrom: offset }, 'the resumed upload failed verification: starting over');
    partialSize = 0;
    restarts++;
  }

  await up.rename(partial, remote);
  log.debug({ resumedFrom, restarts, size: total }, 'uploaded');
  return { path: remote, sha256: expected, size: total, skipped: false, resumedFrom, restarts };
}
