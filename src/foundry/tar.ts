/**
 * A minimal deterministic ustar writer: entries in the given order, fixed mtime, owner root
 * (0:0), mode 0644, padded to 10240-byte records. Enough for OVA packages.
 */
import * as fs from 'node:fs/promises';
import { writeSequentially } from './files';

export interface TarEntry {
  name: string;
  /** Host file to read the content from. */
  file: string;
}

function octal(n: number, width: number): string {
  return `${n.toString(8).padStart(width - 1, '0')}\0`;
}

export function ustarHeader(name: string, size: number, mtime: number): Buffer {
  if (Buffer.byteLength(name) > 100) throw new Error(`tar: name too long: ${name}`);
  const h = Buffer.alloc(512);
  h.write(name, 0, 'utf8');
  h.write(octal(0o644, 8), 100);
  h.write(octal(0, 8), 108);
  h.write(octal(0, 8), 116);
  h.write(octal(size, 12), 124);
  h.write(octal(mtime, 12), 136);
  h.write('        ', 148);
  h.write('0', 156);
  h.write('ustar\0', 257);
  h.write('00', 263);
  h.write('root', 265);
  h.write('root', 297);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return h;
}

/** Write `entries` as a tar archive to `out`. */
export async function writeTar(out: string, entries: readonly TarEntry[], mtime: number): Promise<void> {
  await writeSequentially(out, async (w) => {
    for (const e of entries) {
      const { size } = await fs.stat(e.file);
      await w.put(ustarHeader(e.name, size, mtime));
      await w.putFile(e.file, size);
      if (size % 512) await w.put(Buffer.alloc(512 - (size % 512)));
    }
    await w.put(Buffer.alloc(1024));
    if (w.position % 10240) await w.put(Buffer.alloc(10240 - (w.position % 10240)));
  });
}
