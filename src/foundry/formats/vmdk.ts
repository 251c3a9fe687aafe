import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { BuildFailedError } from '../../errors';
import { sharedOnce, type BuildContext } from '../context';
import { linkOrCopySparse } from '../files';
import { sha256Hex } from '../plan';
import { writeStreamOptimizedVmdk } from '../vmdk-stream';
import { publishArtifact, type OutputFormat } from './format';
import { VMWARE_GUEST_MODULES } from './early-boot';

const SHARED_KEY = 'vmdk-stream-optimized';

/**
 * qemu-img writes a random CID into the vmdk descriptor, printed without zero padding (1 to 8 hex
 * digits), and rewrites the descriptor in place when it updates the CID, so a shorter text leaves
 * stale bytes of the longer one behind its NUL. Rewrite the whole descriptor region (its offset and
 * size come from the sparse extent header) as the text with `CID=` + 8 hex digits of the sha256 of
 * the file whose CID is `00000000`, then NUL padding: a content-derived value of fixed length, and
 * no leftover bytes.
 */
export async function fixVmdkCid(file: string): Promise<string> {
  const name = path.basename(file);
  const fh = await fs.open(file, 'r+');
  try {
    const header = Buffer.alloc(512);
    await fh.read(header, 0, header.length, 0);
    if (header.toString('latin1', 0, 4) !== 'KDMV') throw new BuildFailedError(`${name}: not a sparse vmdk extent (no KDMV magic)`);
    const descStart = Number(header.readBigUInt64LE(28)) * 512;
    const descSize = Number(header.readBigUInt64LE(36)) * 512;
    if (descStart === 0 || descSize === 0 || descSize > 1 << 20) throw new BuildFailedError(`${name}: the vmdk header names no usable embedded descriptor`);
    const region = Buffer.alloc(descSize);
    await fh.read(region, 0, descSize, descStart);
    const nul = region.indexOf(0);
    const text = region.subarray(0, nul < 0 ? descSize : nul).toString('latin1');
    if (!text.startsWith('# Disk DescriptorFile')) throw new BuildFailedError(`${name}: no vmdk descriptor found`);
    const m = /\nCID=([0-9a-f]{1,8})\n/.exec(text);
    if (!m) throw new BuildFailedError(`${name}: no CID in the vmdk descriptor`);
    const zeroed = `${text.slice(0, m.index)}\nCID=00000000\n${text.slice(m.index + m[0].length)}`;
    if (zeroed.length >= descSize) throw new BuildFailedError(`${name}: no room in the vmdk descriptor to normalise the CID`);
    const clean = Buffer.alloc(descSize);
    clean.write(zeroed, 'latin1');
    await fh.write(clean, 0, descSize, descStart);
    const cid = sha256Hex(await fs.readFile(file)).slice(0, 8);
    await fh.write(Buffer.from(cid, 'latin1'), 0, 8, descStart + m.index + '\nCID='.length);
    return cid;
  } finally {
    await fh.close();
  }
}

/** The streamOptimized vmdk in the work directory, made once per build (vmdk and ova share it). */
export function streamOptimizedVmdk(ctx: BuildContext): Promise<string> {
  return sharedOnce(ctx, SHARED_KEY, () => makeStreamOptimizedVmdk(ctx));
}

async function makeStreamOptimizedVmdk(ctx: BuildContext): Promise<string> {
  const out = path.join(ctx.workDir, 'disk.vmdk');
  // qemu-img's own bytes, its grains compressed by one process per core (vmdk-stream.ts).
  await writeStreamOptimizedVmdk(ctx.rawDisk!, out, { createOptions: { adapter_type: 'lsilogic' }, signal: ctx.options.signal });
  const cid = await fixVmdkCid(out);
  ctx.log.info({ cid }, 'vmdk CID fixed');
  return out;
}

/** VMware streamOptimized vmdk (the flavour vSphere imports and OVAs carry). */
export const vmdk: OutputFormat<'vmdk'> = {
  name: 'vmdk',
  description: 'VMware streamOptimized disk (content-derived CID) for ESXi/vSphere',
  consumes: 'disk',
  earlyBoot: { modules: VMWARE_GUEST_MODULES, purpose: 'vmdk: VMware guests (LSI Logic, PVSCSI, SATA, NVMe disks)' },
  tools: ['qemu-img'],
  fileName: (image) => `${image.name}.vmdk`,
  produce: async (ctx) => {
    const src = await streamOptimizedVmdk(ctx);
    return [await publishArtifact(ctx, 'vmdk', vmdk.fileName(ctx.plan.image), (tmp) => linkOrCopySparse(src, tmp))];
  },
};
