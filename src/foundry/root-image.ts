/**
 * The image's root filesystem as a file of its own: the ext4 root partition cut out of the
 * build's finished raw disk (payload applied, same UUID the fstab names), sparse. Formats that
 * boot a bare filesystem (Firecracker) use it; it is made once per build and shared.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { BuildFailedError } from '../errors';
import { sharedOnce, type BuildContext } from './context';
import { diskLayout, layerIds } from './disk';
import { createSparseFile, fileDataExtents, writeUnlessZero } from './files';

const SHARED_KEY = 'root-ext4';
const CHUNK = 4 * 1024 * 1024;

/**
 * Copy `length` bytes of `src` from `offset` into a new sparse file `dst`: only the source's data
 * extents are read, and all-zero chunks are not written, so holes stay holes.
 */
export async function extractSparseRange(src: string, offset: number, length: number, dst: string, signal?: AbortSignal): Promise<void> {
  const { size } = await fs.stat(src);
  if (offset + length > size) throw new BuildFailedError(`${path.basename(src)}: range ${offset}+${length} extends past its end (${size})`);
  const extents = await fileDataExtents(src, size, signal);
  await createSparseFile(dst, length);
  const inp = await fs.open(src, 'r');
  const out = await fs.open(dst, 'r+');
  try {
    const buf = Buffer.alloc(CHUNK);
    for (const [start, end] of extents) {
      let pos = Math.max(start, offset);
      const stop = Math.min(end, offset + length);
      while (pos < stop) {
        const { bytesRead } = await inp.read(buf, 0, Math.min(CHUNK, stop - pos), pos);
        if (bytesRead === 0) throw new BuildFailedError(`${path.basename(src)} shrank while being read`);
        await writeUnlessZero(out, buf.subarray(0, bytesRead), pos - offset);
        pos += bytesRead;
      }
    }
  } finally {
    await inp.close();
    await out.close();
  }
}

/** UUID of an ext2/3/4 filesystem image (superblock at 1024: magic 0xEF53 at +56, UUID at +104). */
export async function ext4Uuid(image: string): Promise<string> {
  const fh = await fs.open(image, 'r');
  try {
    const sb = Buffer.alloc(1024);
    await fh.read(sb, 0, 1024, 1024);
    if (sb.readUInt16LE(56) !== 0xef53) throw new BuildFailedError(`${path.basename(image)} is not an ext4 filesystem`);
    const h = sb.subarray(104, 120).toString('hex');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  } finally {
    await fh.close();
  }
}

async function makeRootImage(ctx: BuildContext): Promise<string> {
  const layout = diskLayout(ctx.plan.image.diskSizeBytes, ctx.inputDigest!);
  const out = path.join(ctx.workDir, 'root.ext4');
  await extractSparseRange(ctx.rawDisk!, layout.root.offset, layout.root.size, out, ctx.options.signal);
  const uuid = await ext4Uuid(out);
  const expected = layerIds(ctx.layer!.digest).rootFsUuid;
  if (uuid !== expected) throw new BuildFailedError(`the root partition holds filesystem ${uuid}, expected ${expected}`);
  return out;
}

/** The root ext4 of this build (in the work directory), cut out once and shared between formats. */
export function rootFilesystemImage(ctx: BuildContext): Promise<string> {
  return sharedOnce(ctx, SHARED_KEY, () => makeRootImage(ctx));
}
