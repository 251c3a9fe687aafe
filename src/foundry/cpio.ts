/**
 * A deterministic newc ("070701") cpio writer, the format the kernel unpacks as an initramfs:
 * entries in the given order, one fixed mtime, inode numbers by position, no device numbers.
 * Several archives may be concatenated (also after a compressed one): the kernel unpacks each.
 */
import * as fs from 'node:fs/promises';
import { writeSequentially } from './files';

export type CpioEntry =
  | { kind: 'dir'; name: string; mode: number; uid?: number; gid?: number }
  | { kind: 'file'; name: string; mode: number; content: Buffer | { hostFile: string }; uid?: number; gid?: number }
  | { kind: 'symlink'; name: string; target: string };

const TYPE_BITS = { dir: 0o040000, file: 0o100000, symlink: 0o120000 } as const;

function hex8(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`cpio: field out of range: ${n}`);
  return n.toString(16).padStart(8, '0');
}

function pad4(n: number): Buffer {
  return Buffer.alloc((4 - (n % 4)) % 4);
}

function header(ino: number, mode: number, uid: number, gid: number, nlink: number, mtime: number, name: string, size: number): Buffer {
  const nameBytes = Buffer.from(`${name}\0`);
  const fields = [ino, mode, uid, gid, nlink, mtime, size, 0, 0, 0, 0, nameBytes.length, 0].map(hex8).join('');
  const head = Buffer.concat([Buffer.from(`070701${fields}`, 'latin1'), nameBytes]);
  return Buffer.concat([head, pad4(head.length)]);
}

function checkName(name: string): void {
  if (name.startsWith('/') || name === '' || name.split('/').includes('..')) throw new Error(`cpio: bad entry name ${JSON.stringify(name)}`);
}

/** Header (and, unless the content is a host file, data with padding) of entry number `ino`. */
function encode(e: CpioEntry, ino: number, mtime: number, hostFileSize?: number): Buffer {
  checkName(e.name);
  if (e.kind === 'dir') return header(ino, TYPE_BITS.dir | e.mode, e.uid ?? 0, e.gid ?? 0, 2, mtime, e.name, 0);
  const data = e.kind === 'symlink' ? Buffer.from(e.target) : Buffer.isBuffer(e.content) ? e.content : undefined;
  const mode = e.kind === 'symlink' ? TYPE_BITS.symlink | 0o777 : TYPE_BITS.file | e.mode;
  const [uid, gid] = e.kind === 'symlink' ? [0, 0] : [e.uid ?? 0, e.gid ?? 0];
  if (!data) return header(ino, mode, uid, gid, 1, mtime, e.name, hostFileSize!);
  return Buffer.concat([header(ino, mode, uid, gid, 1, mtime, e.name, data.length), data, pad4(data.length)]);
}

const TRAILER = header(0, 0, 0, 0, 1, 0, 'TRAILER!!!', 0);

/** The archive of `entries` (names relative, without a leading slash) in memory; contents must be Buffers. */
export function newcArchive(entries: readonly CpioEntry[], mtime: number): Buffer {
  return Buffer.concat([
    ...entries.map((e, i) => {
      if (e.kind === 'file' && !Buffer.isBuffer(e.content)) throw new Error(`cpio: ${e.name}: in-memory archives take Buffer contents`);
      return encode(e, i + 1, mtime);
    }),
    TRAILER,
  ]);
}

/** Write the archive of `entries` to `out`, the same bytes as newcArchive; host-file contents are streamed. */
export async function writeNewcArchive(out: string, entries: readonly CpioEntry[], mtime: number): Promise<void> {
  await writeSequentially(out, async (w) => {
    for (const [i, e] of entries.entries()) {
      if (e.kind !== 'file' || Buffer.isBuffer(e.content)) {
        await w.put(encode(e, i + 1, mtime));
        continue;
      }
      const { size } = await fs.stat(e.content.hostFile);
      await w.put(encode(e, i + 1, mtime, size));
      await w.putFile(e.content.hostFile, size);
      await w.put(pad4(size));
    }
    await w.put(TRAILER);
  });
}

/** Directory entries for every parent of `names` not in `existing`, parents first (mode 0755). */
export function parentDirs(names: readonly string[], existing: ReadonlySet<string> = new Set()): CpioEntry[] {
  const out: CpioEntry[] = [];
  const seen = new Set(existing);
  for (const name of names) {
    const parts = name.split('/').slice(0, -1);
    for (let i = 1; i <= parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (!seen.has(dir)) {
        seen.add(dir);
        out.push({ kind: 'dir', name: dir, mode: 0o755 });
      }
    }
  }
  return out;
}
