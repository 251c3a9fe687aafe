/**
 * Google Compute Engine image import: the raw disk as the single member `disk.raw` of a gzip'd
 * GNU tar (old GNU sparse format, as `tar --format=oldgnu -Sczf` makes it), the layout
 * `gcloud compute images create --source-uri gs://…/image.tar.gz` requires. GCE also requires
 * the disk to be a whole number of GiB (checked with the plan, before any work) and boots it with
 * UEFI when the image is created with `--guest-os-features=UEFI_COMPATIBLE` (GCE_IMPORT).
 * Deterministic: content-derived sparse map, fixed mtime and owner, `gzip -n`.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { BuildFailedError } from '../../errors';
import type { BuildContext } from '../context';
import { writeSparseTar } from '../sparse-tar';
import { gzip } from '../tools/gzip';
import { publishArtifact, type OutputFormat } from './format';
import { ROOT_FS_MODULES } from './early-boot';

const GiB = 1024 * 1024 * 1024;

/** Modules a GCE VM needs early: virtio-scsi or NVMe boot disks; virtio-net or gVNIC network. */
export const GCE_EARLY_MODULES = ['virtio_scsi', 'nvme', 'virtio_net', 'gve'] as const;

/** Settings `gcloud compute images create` needs for this disk. */
export const GCE_IMPORT = { guestOsFeatures: ['UEFI_COMPATIBLE', 'VIRTIO_SCSI_MULTIQUEUE', 'GVNIC'], architecture: 'X86_64' } as const;

export const gce: OutputFormat<'gce'> = {
  name: 'gce',
  description: 'Google Compute Engine: disk.raw in a gzip\'d GNU (oldgnu, sparse) tar for image import',
  consumes: 'disk',
  earlyBoot: { modules: [...ROOT_FS_MODULES, 'virtio_pci', ...GCE_EARLY_MODULES], purpose: 'gce: virtio-scsi/NVMe disks, virtio-net/gVNIC network' },
  tools: ['pigz'],
  fileName: (image) => `${image.name}.gce.tar.gz`,
  produce: async (ctx: BuildContext) => {
    // validatePlan rejects such plans up front; a disk of another size would be refused by GCE.
    const size = (await fs.stat(ctx.rawDisk!)).size;
    if (size % GiB !== 0) throw new BuildFailedError(`gce: the raw disk is ${size} bytes, not a whole number of GiB`);
    const dir = path.join(ctx.workDir, 'gce');
    await fs.mkdir(dir, { recursive: true });
    const tar = path.join(dir, 'disk.tar');
    const { regions, stored } = await writeSparseTar(tar, 'disk.raw', ctx.rawDisk!, ctx.plan.sourceDateEpoch, ctx.options.signal);
    ctx.log.info({ regions, storedMiB: Math.round(stored / 2 ** 20) }, 'gce: sparse tar written');
    await gzip(tar, 6, { signal: ctx.options.signal });
    return [await publishArtifact(ctx, 'gce', gce.fileName(ctx.plan.image), (tmp) => fs.rename(`${tar}.gz`, tmp).catch(() => fs.copyFile(`${tar}.gz`, tmp)))];
  },
};
