/** File helpers of the engine: sparse copies, atomic publication, digests. */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { sha256File } from './lock';

const CHUNK = 4 * 1024 * 1024;
const ZERO = Buffer.alloc(CHUNK);

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
      const chunk = buf.subarray(0, bytesRead);
      if (!chunk.equals(ZERO.subarray(0, bytesRead))) await out.write(chunk, 0, bytesRead, dstOffset + pos);
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
    const sha256 = await sha256File(tmp);
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
