/**
 * The uncompressed ELF kernel of a layer, for VMMs that boot `vmlinux` directly (Firecracker,
 * QEMU microvm). Like the kernel's scripts/extract-vmlinux it decompresses the payload of the
 * distribution's bzImage, but it locates that payload exactly instead of scanning for magic
 * numbers: the x86 boot header (protocol >= 2.08) records `payload_offset` and `payload_length`.
 * The compressor is then recognised by its magic (Debian 12: xz), the payload decompressed, and
 * the result checked to be an x86-64 ELF with a PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY), which
 * is how Firecracker and QEMU enter a vmlinux.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { BuildFailedError } from '../errors';
import { xzDecompress } from './tools/xz';
import { zstdDecompress } from './tools/zstd';

export type KernelCompression = 'gzip' | 'xz' | 'zstd';

export interface KernelPayload {
  /** Byte offset of the compressed kernel inside the bzImage. */
  offset: number;
  /** Its length, including the 4-byte uncompressed size the kernel build appends (xz, zstd, ...). */
  length: number;
  compression: KernelCompression;
}

const MAGICS: readonly [KernelCompression, Buffer][] = [
  ['xz', Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])],
  ['zstd', Buffer.from([0x28, 0xb5, 0x2f, 0xfd])],
  ['gzip', Buffer.from([0x1f, 0x8b, 0x08])],
];

/** Where the compressed kernel is in a bzImage, from its boot header. */
export function locateKernelPayload(bzImage: Buffer): KernelPayload {
  if (bzImage.length < 0x250 || bzImage.toString('latin1', 0x202, 0x206) !== 'HdrS') {
    throw new BuildFailedError('the kernel is not an x86 bzImage (no HdrS boot header)');
  }
  const protocol = bzImage.readUInt16LE(0x206);
  if (protocol < 0x208) throw new BuildFailedError(`the kernel's boot protocol ${protocol.toString(16)} predates payload_offset (2.08)`);
  const setupSects = bzImage[0x1f1] || 4;
  const offset = (setupSects + 1) * 512 + bzImage.readUInt32LE(0x248);
  const length = bzImage.readUInt32LE(0x24c);
  if (offset + length > bzImage.length) throw new BuildFailedError('the kernel payload extends past the end of the bzImage');
  const found = MAGICS.find(([, magic]) => bzImage.subarray(offset, offset + magic.length).equals(magic));
  if (!found) {
    throw new BuildFailedError(
      `the kernel payload is compressed with an unsupported method (magic ${bzImage.subarray(offset, offset + 6).toString('hex')})`,
      'KubeDos extracts gzip, xz and zstd kernels',
    );
  }
  return { offset, length, compression: found[0] };
}

/** The ELF notes of a 64-bit little-endian ELF file (from its PT_NOTE program headers). */
export function elfNotes(elf: Buffer): { name: string; type: number; desc: Buffer }[] {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46) throw new BuildFailedError('the extracted kernel is not an ELF file');
  if (elf[4] !== 2 || elf[5] !== 1 || elf.readUInt16LE(18) !== 62) throw new BuildFailedError('the extracted kernel is not a 64-bit little-endian x86-64 ELF');
  const phoff = Number(elf.readBigUInt64LE(32));
  const phentsize = elf.readUInt16LE(54);
  const phnum = elf.readUInt16LE(56);
  const notes: { name: string; type: number; desc: Buffer }[] = [];
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    if (elf.readUInt32LE(ph) !== 4) continue; // PT_NOTE
    const start = Number(elf.readBigUInt64LE(ph + 8));
    const end = start + Number(elf.readBigUInt64LE(ph + 32));
    let p = start;
    while (p + 12 <= end) {
      const namesz = elf.readUInt32LE(p);
      const descsz = elf.readUInt32LE(p + 4);
      const type = elf.readUInt32LE(p + 8);
      const nameAt = p + 12;
      const descAt = nameAt + Math.ceil(namesz / 4) * 4;
      notes.push({ name: elf.toString('latin1', nameAt, nameAt + Math.max(0, namesz - 1)), type, desc: elf.subarray(descAt, descAt + descsz) });
      p = descAt + Math.ceil(descsz / 4) * 4;
    }
  }
  return notes;
}

/** XEN_ELFNOTE_PHYS32_ENTRY: the 32-bit PVH entry point VMMs jump to. */
const XEN_ELFNOTE_PHYS32_ENTRY = 18;

export function hasPvhEntry(elf: Buffer): boolean {
  return elfNotes(elf).some((n) => n.name === 'Xen' && n.type === XEN_ELFNOTE_PHYS32_ENTRY);
}

/**
 * Write the uncompressed ELF vmlinux of `bzImagePath` to `out` (a scratch directory beside it is
 * used for the decompression). Deterministic: the bytes are the kernel's own.
 */
export async function extractVmlinux(bzImagePath: string, out: string, signal?: AbortSignal): Promise<void> {
  const bzImage = await fs.readFile(bzImagePath);
  const payload = locateKernelPayload(bzImage);
  const compressed = bzImage.subarray(payload.offset, payload.offset + payload.length);
  await fs.rm(out, { force: true });
  switch (payload.compression) {
    case 'gzip':
      await fs.writeFile(out, gunzipSync(compressed));
      break;
    case 'xz': {
      // xz decompresses NAME.xz to NAME; --single-stream ignores the appended size.
      await fs.writeFile(`${out}.xz`, compressed);
      await xzDecompress(`${out}.xz`, { signal });
      break;
    }
    case 'zstd': {
      // A zstd frame is self-delimiting but zstd reads trailing bytes as a next frame: drop the size.
      const frame = path.join(path.dirname(out), `.${path.basename(out)}.zst`);
      await fs.writeFile(frame, compressed.subarray(0, compressed.length - 4));
      try {
        await zstdDecompress(frame, out, { signal });
      } finally {
        await fs.rm(frame, { force: true });
      }
      break;
    }
  }
  const elf = await fs.readFile(out);
  if (!hasPvhEntry(elf)) {
    throw new BuildFailedError('the kernel has no PVH entry note: Firecracker and QEMU microvm cannot boot it as vmlinux', 'use a kernel built with CONFIG_PVH=y (Debian\'s is)');
  }
}
