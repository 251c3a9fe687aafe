/**
 * A deterministic single-file GNU tar in the old GNU sparse format (`tar --format=oldgnu -S`,
 * what Google Compute Engine documents for disk.raw): typeflag `S`, a map of the file's data
 * regions (4 in the header, 21 per extension block), then only those regions' bytes. The map is
 * derived from the CONTENT, never from the filesystem's holes: the file is read in 4 KiB blocks
 * (holes reported by SEEK_DATA are known zeros and skipped), every all-zero block is left out.
 * Fixed mtime, owner root (0:0), mode 0644, 10240-byte records: same input, same bytes.
 */
import * as fs from 'node:fs/promises';
import { BuildFailedError } from '../errors';
import { fileDataExtents, writeSequentially } from './files';

const BLOCK = 4096;
const RECORD = 10240;
const READ_CHUNK = 4 * 1024 * 1024;

/** A data region: `[offset, length]` in the original file. */
export type SparseRegion = [number, number];

/** GNU numeric field: octal with a NUL terminator when it fits, else base-256 (leading 0x80). */
export function tarNumber(n: number, width: number): Buffer {
  const b = Buffer.alloc(width);
  if (!Number.isSafeInteger(n) || n < 0) throw new BuildFailedError(`tar: cannot encode ${n}`);
  if (n < 8 ** (width - 1)) {
    b.write(n.toString(8).padStart(width - 1, '0'), 0, 'latin1');
    return b;
  }
  let v = BigInt(n);
  for (let i = width - 1; i >= 1; i--) {
    b[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  b[0] = 0x80;
  return b;
}

/** The data regions of `file` at 4 KiB granularity, decided by content. */
export async function sparseRegions(file: string, signal?: AbortSignal): Promise<{ size: number; regions: SparseRegion[] }> {
  const fh = await fs.open(file, 'r');
  try {
    const { size } = await fh.stat();
    const extents = await fileDataExtents(file, size, signal);
    const regions: SparseRegion[] = [];
    const add = (start: number, end: number) => {
      const last = regions[regions.length - 1];
      if (last && last[0] + last[1] === start) last[1] += end - start;
      else regions.push([start, end - start]);
    };
    const buf = Buffer.alloc(READ_CHUNK);
    for (const [extStart, extEnd] of extents) {
      let pos = Math.floor(extStart / BLOCK) * BLOCK;
      const stop = Math.min(size, Math.ceil(extEnd / BLOCK) * BLOCK);
      // Extents of a file system are block-aligned; re-reading a block shared with the previous extent is harmless.
      if (regions.length > 0) {
        const last = regions[regions.length - 1]!;
        pos = Math.max(pos, last[0] + last[1]);
      }
      while (pos < stop) {
        if (signal?.aborted) throw new BuildFailedError('sparse tar: cancelled');
        const { bytesRead } = await fh.read(buf, 0, Math.min(READ_CHUNK, stop - pos), pos);
        if (bytesRead === 0) throw new BuildFailedError(`${file} shrank while being read`);
        for (let off = 0; off < bytesRead; off += BLOCK) {
          const end = Math.min(off + BLOCK, bytesRead);
          let zero = true;
          for (let i = off; i < end; i++) {
            if (buf[i] !== 0) {
              zero = false;
              break;
            }
          }
          if (!zero) add(pos + off, pos + end);
        }
        pos += bytesRead;
      }
    }
    return { size, regions };
  } finally {
    await fh.close();
  }
}

function checksum(h: Buffer): void {
  h.fill(' ', 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
}

function putRegion(h: Buffer, at: number, r: SparseRegion): void {
  tarNumber(r[0], 12).copy(h, at);
  tarNumber(r[1], 12).copy(h, at + 12);
}

/** The header block(s) of one old-GNU sparse member. */
export function oldGnuSparseHeaders(name: string, size: number, regions: readonly SparseRegion[], mtime: number): Buffer[] {
  if (Buffer.byteLength(name) > 99) throw new BuildFailedError(`tar: name too long: ${name}`);
  // GNU tar ends every map with a region that reaches the end of the file (zero-length after a hole).
  const map = [...regions];
  const last = map[map.length - 1];
  if (!last || last[0] + last[1] < size) map.push([size, 0]);
  const stored = map.reduce((n, r) => n + r[1], 0);
  const h = Buffer.alloc(512);
  h.write(name, 0, 'utf8');
  tarNumber(0o644, 8).copy(h, 100);
  tarNumber(0, 8).copy(h, 108);
  tarNumber(0, 8).copy(h, 116);
  tarNumber(stored, 12).copy(h, 124);
  tarNumber(mtime, 12).copy(h, 136);
  h.write('S', 156, 'latin1');
  h.write('ustar  \0', 257, 'latin1');
  h.write('root', 265, 'latin1');
  h.write('root', 297, 'latin1');
  map.slice(0, 4).forEach((r, i) => putRegion(h, 386 + i * 24, r));
  if (map.length > 4) h[482] = 1;
  tarNumber(size, 12).copy(h, 483);
  checksum(h);
  const blocks = [h];
  for (let i = 4; i < map.length; i += 21) {
    const ext = Buffer.alloc(512);
    map.slice(i, i + 21).forEach((r, j) => putRegion(ext, j * 24, r));
    if (i + 21 < map.length) ext[504] = 1;
    blocks.push(ext);
  }
  return blocks;
}

/** Write a tar holding `file` as the single sparse member `name`. */
export async function writeSparseTar(out: string, name: string, file: string, mtime: number, signal?: AbortSignal): Promise<{ regions: number; stored: number }> {
  const { size, regions } = await sparseRegions(file, signal);
  const inp = await fs.open(file, 'r');
  let stored = 0;
  try {
    await writeSequentially(out, async (w) => {
      for (const block of oldGnuSparseHeaders(name, size, regions, mtime)) await w.put(block);
      const buf = Buffer.alloc(READ_CHUNK);
      for (const [offset, length] of regions) {
        let done = 0;
        while (done < length) {
          const { bytesRead } = await inp.read(buf, 0, Math.min(READ_CHUNK, length - done), offset + done);
          if (bytesRead === 0) throw new BuildFailedError(`${file} shrank while being archived`);
          await w.put(buf.subarray(0, bytesRead));
          done += bytesRead;
        }
        stored += length;
      }
      if (w.position % 512) await w.put(Buffer.alloc(512 - (w.position % 512)));
      await w.put(Buffer.alloc(1024));
      if (w.position % RECORD) await w.put(Buffer.alloc(RECORD - (w.position % RECORD)));
    });
  } finally {
    await inp.close();
  }
  return { regions: regions.length, stored };
}
