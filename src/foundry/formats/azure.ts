/**
 * Azure managed image: a FIXED VHD (the raw disk followed by a 512-byte footer) whose virtual size
 * is a whole number of MiB, as Azure requires of uploaded page blobs. `qemu-img convert -O vpc -o
 * subformat=fixed,force_size=on` keeps the size exact (no CHS rounding); the plan guarantees whole
 * MiB. qemu-img stamps the footer with the current time and a random unique id: both are then set
 * from the plan (time = SOURCE_DATE_EPOCH, id derived from the input digest) and the footer
 * checksum recomputed. The disk boots with UEFI only: create the image as Hyper-V generation 2.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { BuildFailedError } from '../../errors';
import type { BuildContext } from '../context';
import { derivedUuid } from '../plan';
import { qemuImgConvert } from '../tools/qemu-img';
import { publishArtifact, type OutputFormat } from './format';
import { ROOT_FS_MODULES } from './early-boot';

const MiB = 1024 * 1024;
/** VHD timestamps count seconds from 2000-01-01T00:00:00Z. */
const VHD_EPOCH = 946684800;
const FOOTER = 512;

/** Modules an Azure VM needs early: VMBus, synthetic storage (storvsc) and network (netvsc). */
export const AZURE_EARLY_MODULES = ['hv_vmbus', 'hv_storvsc', 'hv_netvsc'] as const;

/** Settings the managed image needs for this disk. */
export const AZURE_IMPORT = { hyperVGeneration: 'V2', osType: 'Linux' } as const;

export interface VhdFooter {
  cookie: string;
  diskType: number;
  currentSize: number;
  originalSize: number;
  timestamp: number;
  uniqueId: string;
  checksumOk: boolean;
}

function footerChecksum(f: Buffer): number {
  let sum = 0;
  for (let i = 0; i < FOOTER; i++) if (i < 64 || i >= 68) sum += f[i]!;
  return ~sum >>> 0;
}

export function parseVhdFooter(f: Buffer): VhdFooter {
  return {
    cookie: f.toString('latin1', 0, 8),
    diskType: f.readUInt32BE(60),
    originalSize: Number(f.readBigUInt64BE(40)),
    currentSize: Number(f.readBigUInt64BE(48)),
    timestamp: f.readUInt32BE(24),
    uniqueId: f.subarray(68, 84).toString('hex'),
    checksumOk: f.readUInt32BE(64) === footerChecksum(f),
  };
}

/** Set the footer's timestamp and unique id, recompute its checksum (in place). */
export async function normaliseVhdFooter(file: string, epoch: number, uniqueId: string): Promise<VhdFooter> {
  const fh = await fs.open(file, 'r+');
  try {
    const { size } = await fh.stat();
    const f = Buffer.alloc(FOOTER);
    await fh.read(f, 0, FOOTER, size - FOOTER);
    if (f.toString('latin1', 0, 8) !== 'conectix') throw new BuildFailedError(`${path.basename(file)}: no VHD footer`);
    f.writeUInt32BE(Math.max(0, epoch - VHD_EPOCH), 24);
    Buffer.from(uniqueId.replace(/-/g, ''), 'hex').copy(f, 68);
    f.writeUInt32BE(footerChecksum(f), 64);
    await fh.write(f, 0, FOOTER, size - FOOTER);
    return parseVhdFooter(f);
  } finally {
    await fh.close();
  }
}

export const azure: OutputFormat<'azure'> = {
  name: 'azure',
  description: 'Azure: fixed VHD, virtual size a whole number of MiB (Hyper-V generation 2, UEFI)',
  consumes: 'disk',
  earlyBoot: { modules: [...ROOT_FS_MODULES, ...AZURE_EARLY_MODULES], purpose: 'azure: Hyper-V storage and network' },
  tools: ['qemu-img'],
  fileName: (image) => `${image.name}.vhd`,
  produce: async (ctx: BuildContext) => {
    const size = (await fs.stat(ctx.rawDisk!)).size;
    if (size % MiB !== 0) throw new BuildFailedError(`azure: the raw disk is ${size} bytes, not a whole number of MiB`);
    return [
      await publishArtifact(ctx, 'azure', azure.fileName(ctx.plan.image), async (tmp) => {
        await qemuImgConvert(
          { source: ctx.rawDisk!, sourceFormat: 'raw', dest: tmp, destFormat: 'vpc', options: { subformat: 'fixed', force_size: 'on' }, cache: 'unsafe' },
          { signal: ctx.options.signal },
        );
        const footer = await normaliseVhdFooter(tmp, ctx.plan.sourceDateEpoch, derivedUuid(ctx.inputDigest!, 'vhd-unique-id'));
        if (footer.diskType !== 2 || footer.currentSize !== size || (await fs.stat(tmp)).size !== size + FOOTER) {
          throw new BuildFailedError(`azure: qemu-img did not write a fixed VHD of ${size} bytes`);
        }
      }),
    ];
  },
};
