/**
 * The image tar.gz uploaded to Cloud Storage by a resumable upload (@google-cloud/storage), so a
 * worker killed halfway loses at most one chunk:
 *
 * - the object `kubedos/<sha256>.tar.gz` carries the artifact's sha256 in its metadata; one
 *   that is complete (that sha256, that size, that MD5) is a no-op;
 * - the upload goes in chunks of CHUNK bytes; after each, the server's acknowledged range (its
 *   308 answer) is heartbeated with the session URI, so a retried attempt continues that session
 *   from that offset (the file is read from there) instead of starting again;
 * - the finished object's MD5 is compared with the file's: a resumed session that went wrong is
 *   deleted and uploaded once more from scratch, never left behind as the image source.
 *
 * The session URI is a bearer credential for that one upload: it travels only in heartbeats
 * (encrypted payloads, like everything in workflow history) and is never logged.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { File } from '@google-cloud/storage';
import { resumedOperation, type DriverContext, type ProgressDetail } from '../driver';
import { isGcpNotFound } from './failures';

/** Chunk size of the resumable upload (a multiple of 256 KiB, as Cloud Storage requires). */
export const CHUNK = 16 * 1024 * 1024;
export const META_SHA256 = 'kubedos-sha256';

export interface UploadSession {
  uri: string;
  /** Bytes the server acknowledged. */
  offset: number;
}

/** What a heartbeat carries about an upload. */
export function encodeSession(object: string, s: UploadSession): string {
  return JSON.stringify({ gcs: object, uri: s.uri, offset: s.offset });
}

/** The session a previous attempt heartbeated for `object`. */
export function previousSession(previous: ProgressDetail | undefined, object: string): UploadSession | undefined {
  const op = resumedOperation(previous);
  if (!op) return undefined;
  try {
    const p = JSON.parse(op) as { gcs?: unknown; uri?: unknown; offset?: unknown };
    if (p.gcs !== object || typeof p.uri !== 'string' || !/^https?:\/\//.test(p.uri) || typeof p.offset !== 'number' || !Number.isSafeInteger(p.offset) || p.offset < 0) return undefined;
    return { uri: p.uri, offset: p.offset };
  } catch {
    return undefined;
  }
}

/** MD5 of a file, base64 (as Cloud Storage reports md5Hash). */
async function md5Base64(path: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash('md5');
  await pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), async function* (chunks: AsyncIterable<Buffer>) {
    for await (const c of chunks) hash.update(c);
  }, { signal });
  return hash.digest('base64');
}

export interface ObjectUploadResult {
  /** Bytes sent in this call. */
  sent: number;
  /** Where this call started (0, or a resumed session's offset). */
  resumedAt: number;
  /** The object was already complete. */
  complete: boolean;
}

/** Upload `file` to `object` resumably (see the file comment); `step` names the heartbeats. */
export async function uploadObject(object: File, file: { path: string; sha256: string; size: number }, step: string, ctx: DriverContext): Promise<ObjectUploadResult> {
  const md5 = await md5Base64(file.path, ctx.signal);
  const existing = await object.getMetadata().then(([m]) => m, (err: unknown) => {
    if (isGcpNotFound(err)) return undefined;
    throw err;
  });
  if (existing && existing.metadata?.[META_SHA256] === file.sha256 && Number(existing.size) === file.size && existing.md5Hash === md5) {
    return { sent: 0, resumedAt: file.size, complete: true };
  }
  let session = previousSession(ctx.previous, object.name);
  for (let attempt = 1; ; attempt++) {
    if (!session) {
      const [uri] = await object.createResumableUpload({ metadata: { contentType: 'application/gzip', metadata: { [META_SHA256]: file.sha256 } } });
      session = { uri, offset: 0 };
    }
    let result: ObjectUploadResult;
    try {
      result = await sendFrom(object, file, session, step, ctx);
    } catch (err) {
      // A session Cloud Storage no longer knows (expired after a week, or cancelled): a new one.
      const status = (err as { code?: unknown }).code;
      if (session.offset > 0 && (status === 404 || status === 410) && attempt < 2) {
        session = undefined;
        continue;
      }
      throw err;
    }
    const [meta] = await object.getMetadata();
    if (meta.md5Hash === md5 && Number(meta.size) === file.size && meta.metadata?.[META_SHA256] === file.sha256) return result;
    // A resumed session that did not add up (an offset the server did not have): start afresh, once.
    await object.delete({ ignoreNotFound: true });
    if (attempt >= 2) throw new Error(`Cloud Storage holds ${meta.size} bytes with MD5 ${meta.md5Hash} for ${object.name} after a fresh upload of ${file.size} bytes with MD5 ${md5}`);
    session = undefined;
  }
}

/** One pass over a session: the file from its start (the SDK skips to the offset), chunk by chunk, acknowledgements heartbeated. */
async function sendFrom(object: File, file: { path: string; size: number }, session: UploadSession, step: string, ctx: DriverContext): Promise<ObjectUploadResult> {
  const resumedAt = session.offset;
  let acked = session.offset;
  const beat = () => ctx.progress?.({ step, done: acked, total: file.size, resume: { operation: encodeSession(object.name, { uri: session.uri, offset: acked }) } });
  beat();
  const timer = setInterval(beat, 5_000);
  const writable = object.createWriteStream({ resumable: true, uri: session.uri, offset: session.offset, chunkSize: CHUNK, validation: false, contentType: 'application/gzip' });
  writable.on('response', (resp: { status?: number; headers?: Record<string, string> }) => {
    // 308 Resume Incomplete: `Range: bytes=0-<last byte persisted>`.
    const m = /bytes=0-(\d+)/.exec(resp.headers?.range ?? '');
    if (m) acked = Math.max(acked, Number(m[1]) + 1);
    if (resp.status === 200 || resp.status === 201) acked = file.size;
    beat();
  });
  // The SDK takes a resumed upload's stream to start at the offset.
  let read = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      read += chunk.length;
      cb(null, chunk);
    },
  });
  try {
    await pipeline(createReadStream(file.path, { start: session.offset, highWaterMark: 1 << 20 }), counter, writable, { signal: ctx.signal });
  } finally {
    clearInterval(timer);
  }
  return { sent: read, resumedAt, complete: false };
}
