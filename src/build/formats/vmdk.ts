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
 * qemu-img writes a random CID into the vmdk descriptor, printed without zero padding (1 to 8 hex
 * digits). Rewrite the descriptor text with `CID=` + 8 hex digits of the sha256 of the file whose
 * CID is `00000000`: a content-derived, stable value of fixed length. The descriptor lives in a
 * NUL-padded region far larger than its text, so the text may grow by the few missing digits.
 */
export async function fixVmdkCid(file: string): Promise<string> {
  const fh = await fs.open(file, 'r+');
  try {
    const head = Buffer.alloc(64 * 1024);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    const start = head.subarray(0, bytesRead).indexOf('# Disk DescriptorFile', 0, 'latin1');
    const end = start < 0 ? -1 : head.indexOf(0, start);
    if (start < 0 || end < 0) throw new BuildFailedError(`${path.basename(file)}: no vmdk descriptor found`);
    const text = head.subarray(start, end).toString('latin1');
    const m = /\nCID=([0-9a-f]{1,8})\n/.exec(text);
    if (!m) throw new BuildFailedError(`${path.basename(file)}: no CID in the vmdk descriptor`);
    const zeroed = `${text.slice(0, m.index)}\nCID=00000000\n${text.slice(m.index + m[0].length)}`;
    const room = head.subarray(end, start + zeroed.length);
    if (room.some((b) => b !== 0)) throw new BuildFailedError(`${path.basename(file)}: no room in the vmdk descriptor to normalise the CID`);
    const region = Buffer.alloc(Math.max(text.length, zeroed.length));
    region.write(zeroed, 'latin1');
    await fh.write(region, 0, region.length, start);
    const cid = sha256Hex(await fs.readFile(file)).slice(0, 8);
    await fh.write(Buffer.from(cid, 'latin1'), 0, 8, start + m.index + '\nCID='.length);
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
