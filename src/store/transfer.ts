/**
 * Streaming helpers shared by the store backends: hashing a file, and writing a stream to a file
 * that only appears (by rename) once its sha256 has been checked. Zero blocks are written as
 * holes, so a sparse disk image stays sparse after a download.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { CancelledError, DigestMismatchError } from '../errors';
import type { BlobRef, TransferOptions } from './store';

const READ_CHUNK = 4 * 1024 * 1024;
/** Granularity of hole detection: a block of zeros this large is skipped, not written. */
const HOLE_BLOCK = 64 * 1024;
const ZEROS = Buffer.alloc(HOLE_BLOCK);

export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw new CancelledError(what);
}

/** sha256 of a file, streamed. */
export async function sha256OfFile(file: string, options: TransferOptions = {}): Promise<BlobRef> {
  const hash = createHash('sha256');
  let size = 0;
  const total = options.onProgress ? (await fs.stat(file)).size : 0;
  try {
    for await (const chunk of createReadStream(file, { highWaterMark: READ_CHUNK, signal: options.signal })) {
      hash.update(chunk as Buffer);
      size += (chunk as Buffer).length;
      options.onProgress?.({ phase: 'hash', bytes: size, total });
    }
  } catch (err) {
    if (options.signal?.aborted) throw new CancelledError(`hashing ${file}`);
    throw err;
  }
  return { sha256: hash.digest('hex'), size };
}

/** sha256 (hex) of bytes. */
export function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * Write `source` to `dest` through a temp file beside it; the sha256 of what was written must be
 * `expected`, else the temp file is removed and DigestMismatchError is thrown (dest untouched).
 */
export async function writeVerified(
  source: AsyncIterable<Buffer | Uint8Array>,
  dest: string,
  expected: string,
  options: TransferOptions & { total?: number; where?: string } = {},
): Promise<BlobRef> {
  await fs.mkdir(path.dirname(dest), { recursive: true });
  const tmp = path.join(path.dirname(dest), `.${path.basename(dest)}.kubedos-${randomUUID()}.tmp`);
  const handle = await fs.open(tmp, 'wx', 0o644);
  const hash = createHash('sha256');
  let size = 0;
  let renamed = false;
  try {
    for await (const piece of source) {
      throwIfAborted(options.signal, `download of sha256:${expected}`);
      const chunk = Buffer.isBuffer(piece) ? piece : Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
      hash.update(chunk);
      await writeSparse(handle, chunk, size);
      size += chunk.length;
      options.onProgress?.({ phase: 'download', bytes: size, total: options.total ?? 0 });
    }
    throwIfAborted(options.signal, `download of sha256:${expected}`);
    // Trailing holes: the file must still have its full length.
    await handle.truncate(size);
    await handle.sync();
    await handle.close();
    const actual = hash.digest('hex');
    if (actual !== expected) throw new DigestMismatchError(expected, actual, options.where ?? dest);
    await fs.rename(tmp, dest);
    renamed = true;
    return { sha256: actual, size };
  } catch (err) {
    if (options.signal?.aborted && !(err instanceof CancelledError)) throw new CancelledError(`download of sha256:${expected}`);
    throw err;
  } finally {
    await handle.close().catch(() => undefined);
    if (!renamed) await fs.rm(tmp, { force: true });
  }
}

/** Write `chunk` at `position`, skipping whole zero blocks (they stay holes). */
async function writeSparse(handle: fs.FileHandle, chunk: Buffer, position: number): Promise<void> {
  let start = 0;
  while (start < chunk.length) {
    // Extend a run of data blocks as far as it goes, then write it in one call.
    let end = start;
    while (end < chunk.length) {
      const blockEnd = Math.min(end + HOLE_BLOCK, chunk.length);
      if (isZero(chunk, end, blockEnd)) break;
      end = blockEnd;
    }
    if (end > start) await writeAll(handle, chunk.subarray(start, end), position + start);
    // Skip the zero blocks that follow.
    while (end < chunk.length) {
      const blockEnd = Math.min(end + HOLE_BLOCK, chunk.length);
      if (!isZero(chunk, end, blockEnd)) break;
      end = blockEnd;
    }
    start = end;
  }
}

function isZero(buf: Buffer, start: number, end: number): boolean {
  return buf.subarray(start, end).equals(ZEROS.subarray(0, end - start));
}

async function writeAll(handle: fs.FileHandle, data: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await handle.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}

/** Read up to `length` bytes at `position` into `buf` (fewer only at end of file); the bytes read. */
export async function readInto(handle: fs.FileHandle, buf: Buffer, position: number, length: number): Promise<Buffer> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buf, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return buf.subarray(0, done);
}
