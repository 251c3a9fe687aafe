/** File helpers of the engine: sparse copies, atomic publication, digests, sequential writes. */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { BuildFailedError } from '../errors';
import { dataExtents } from './tools/data-extents';

const CHUNK = 4 * 1024 * 1024;
const ZERO = Buffer.alloc(CHUNK);

/** Write `chunk` (at most 4 MiB) at `position` unless it is all zeros, so a hole stays a hole. */
export async function writeUnlessZero(out: fs.FileHandle, chunk: Buffer, position: number): Promise<void> {
  if (!chunk.equals(ZERO.subarray(0, chunk.length))) await out.write(chunk, 0, chunk.length, position);
}

/**
 * Copy `src` into `dst` at `dstOffset` without writing all-zero chunks, so holes stay holes.
 * `dst` must exist and be sized (a sparse file made with `createSparseFile`).
 */
export async function copySparse(src: string, dst: string, dstOffset = 0): Promise<void> {
  const inp = await fs.open(src, 'r');
  const out = await fs.open(dst, 'r+');
  try {
    const buf = Buffer.alloc(CHUNK);
    let pos = 0;
    for (;;) {
      const { bytesRead } = await inp.read(buf, 0, CHUNK, pos);
      if (bytesRead === 0) break;
      await writeUnlessZero(out, buf.subarray(0, bytesRead), dstOffset + pos);
      pos += bytesRead;
    }
  } finally {
    await inp.close();
    await out.close();
  }
}

/** Create (or truncate) a sparse file of `size` bytes. */
export async function createSparseFile(file: string, size: number): Promise<void> {
  const fh = await fs.open(file, 'w');
  try {
    await fh.truncate(size);
  } finally {
    await fh.close();
  }
}

/** A sparse copy of a whole file. */
export async function copySparseFile(src: string, dst: string): Promise<void> {
  const { size } = await fs.stat(src);
  await createSparseFile(dst, size);
  await copySparse(src, dst, 0);
}

/** A temporary name beside `final`, for write-then-rename publication. */
export function tempPathFor(final: string): string {
  return path.join(path.dirname(final), `.${path.basename(final)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/**
 * Publish a file atomically: `write` fills a temporary file beside `final`, which is then renamed
 * over it. Readers see the old file or the complete new one, never a partial one.
 */
export async function publishAtomically(final: string, write: (tmp: string) => Promise<void>): Promise<{ sha256: string; size: number }> {
  await fs.mkdir(path.dirname(final), { recursive: true });
  const tmp = tempPathFor(final);
  try {
    await write(tmp);
    const sha256 = await sha256SparseFile(tmp);
    const { size } = await fs.stat(tmp);
    await fs.rename(tmp, final);
    return { sha256, size };
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
}

/** Hard-link when on the same filesystem, sparse copy otherwise. */
export async function linkOrCopySparse(src: string, dst: string): Promise<void> {
  try {
    await fs.link(src, dst);
  } catch {
    await copySparseFile(src, dst);
  }
}

const HASH_CHUNK = 1024 * 1024;
const HASH_ZEROS = Buffer.alloc(HASH_CHUNK);
/** Give the event loop a turn every this many hashed bytes (concurrent digests interleave). */
const HASH_YIELD = 64 * 1024 * 1024;

/** Parse `start end` lines of the data-extents tool. */
export function parseExtents(text: string, size: number): [number, number][] {
  const out: [number, number][] = [];
  let last = 0;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const [a, b] = line.trim().split(/\s+/).map(Number) as [number, number];
    if (!Number.isSafeInteger(a) || !Number.isSafeInteger(b) || a < last || b < a) throw new BuildFailedError(`data extents: unexpected line ${JSON.stringify(line)}`);
    out.push([a, Math.min(b, size)]);
    last = b;
  }
  return out;
}

/** The data extents of `file` (`size` bytes), `[start, end)` ascending, from SEEK_DATA/SEEK_HOLE. */
export async function fileDataExtents(file: string, size: number, signal?: AbortSignal): Promise<[number, number][]> {
  return parseExtents((await dataExtents(file, { signal })).stdout, size);
}

/**
 * sha256 of a sparse file without reading its holes: data extents (SEEK_DATA/SEEK_HOLE) are read,
 * holes are fed to the hash as zeros from memory. Reading a hole is not free: the kernel fills the
 * page cache with zero pages, which for a fresh 2 GiB disk image costs several seconds.
 */
export async function sha256SparseFile(file: string, signal?: AbortSignal): Promise<string> {
  const fh = await fs.open(file, 'r');
  try {
    const { size } = await fh.stat();
    const extents = await fileDataExtents(file, size, signal);
    const hash = createHash('sha256');
    const buf = Buffer.allocUnsafe(HASH_CHUNK);
    let sinceYield = 0;
    const fed = async (n: number) => {
      sinceYield += n;
      if (sinceYield >= HASH_YIELD) {
        sinceYield = 0;
        await yieldToLoop();
      }
    };
    let pos = 0;
    const zeros = async (end: number) => {
      while (pos < end) {
        const n = Math.min(HASH_CHUNK, end - pos);
        hash.update(n === HASH_CHUNK ? HASH_ZEROS : HASH_ZEROS.subarray(0, n));
        pos += n;
        await fed(n);
      }
    };
    for (const [start, end] of extents) {
      await zeros(start);
      while (pos < end) {
        const { bytesRead } = await fh.read(buf, 0, Math.min(HASH_CHUNK, end - pos), pos);
        if (bytesRead === 0) throw new BuildFailedError(`${file} shrank while being digested`);
        hash.update(buf.subarray(0, bytesRead));
        pos += bytesRead;
        await fed(bytesRead);
      }
    }
    await zeros(size);
    return hash.digest('hex');
  } finally {
    await fh.close();
  }
}

/** Appends to a file being written front to back (archives: cpio, tar). */
export interface SequentialWriter {
  put(b: Buffer): Promise<void>;
  /** Stream a host file of `size` bytes; it must not change size meanwhile. */
  putFile(file: string, size: number): Promise<void>;
  /** Bytes written so far. */
  readonly position: number;
}

/** Create `out` and let `fill` write it front to back; the file is closed whatever happens. */
export async function writeSequentially(out: string, fill: (w: SequentialWriter) => Promise<void>): Promise<void> {
  const fh = await fs.open(out, 'w');
  let position = 0;
  const put = async (b: Buffer) => {
    await fh.write(b, 0, b.length, position);
    position += b.length;
  };
  const writer: SequentialWriter = {
    put,
    async putFile(file, size) {
      let copied = 0;
      for await (const chunk of createReadStream(file, { highWaterMark: 4 * 1024 * 1024 })) {
        await put(chunk as Buffer);
        copied += (chunk as Buffer).length;
      }
      if (copied !== size) throw new Error(`${file} changed while being archived (${copied} bytes, expected ${size})`);
    },
    get position() {
      return position;
    },
  };
  try {
    await fill(writer);
  } finally {
    await fh.close();
  }
}
