import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { BuildFailedError } from '../../errors';
import type { BuildContext } from '../context';
import { linkOrCopySparse } from '../files';
import { sha256Hex } from '../plan';
import { qemuImgConvert } from '../tools/qemu-img';
import { publishArtifact, type OutputFormat } from './format';

const SHARED_KEY = 'vmdk-stream-optimized';

/**
 * qemu-img writes a random CID into the vmdk descriptor. Replace it (same length, in place) with
 * 8 hex digits of the sha256 of the file with its CID zeroed: a content-derived, stable value.
 */
export async function fixVmdkCid(file: string): Promise<string> {
  const fh = await fs.open(file, 'r+');
  try {
    const head = Buffer.alloc(64 * 1024);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    const text = head.subarray(0, bytesRead).toString('latin1');
    const m = /\nCID=([0-9a-f]{8})\n/.exec(text);
    if (!m) throw new BuildFailedError(`${path.basename(file)}: no CID in the vmdk descriptor`);
    const at = m.index + 5;
    await fh.write(Buffer.from('00000000'), 0, 8, at);
    const data = await fs.readFile(file);
    const cid = sha256Hex(data).slice(0, 8);
    await fh.write(Buffer.from(cid), 0, 8, at);
    return cid;
  } finally {
    await fh.close();
  }
}

/** The streamOptimized vmdk in the work directory, made once per build (vmdk and ova share it). */
export function streamOptimizedVmdk(ctx: BuildContext): Promise<string> {
  let made = ctx.shared.get(SHARED_KEY);
  if (!made) {
    made = makeStreamOptimizedVmdk(ctx);
    ctx.shared.set(SHARED_KEY, made);
  }
  return made;
}

async function makeStreamOptimizedVmdk(ctx: BuildContext): Promise<string> {
  const out = path.join(ctx.workDir, 'disk.vmdk');
  await qemuImgConvert(
    { source: ctx.rawDisk!, sourceFormat: 'raw', dest: out, destFormat: 'vmdk', options: { subformat: 'streamOptimized', adapter_type: 'lsilogic' }, cache: 'unsafe' },
    { signal: ctx.options.signal },
  );
  const cid = await fixVmdkCid(out);
  ctx.log.info({ cid }, 'vmdk CID fixed');
  return out;
}

/** VMware streamOptimized vmdk (the flavour vSphere imports and OVAs carry). */
export const vmdk: OutputFormat = {
  name: 'vmdk',
  description: 'VMware vmdk (streamOptimized), content-derived CID',
  fileName: (image) => `${image.name}.vmdk`,
  produce: async (ctx) => {
    const src = await streamOptimizedVmdk(ctx);
    return [await publishArtifact(ctx, 'vmdk', vmdk.fileName(ctx.plan.image), (tmp) => linkOrCopySparse(src, tmp))];
  },
};
