import { linkOrCopySparse } from '../files';
import { publishArtifact, type OutputFormat } from './format';

/** The GPT disk itself, sparse. */
export const raw: OutputFormat<'raw'> = {
  name: 'raw',
  description: 'Sparse raw GPT disk image (UEFI); QEMU/KVM, Proxmox, dd to bare metal',
  consumes: 'disk',
  tools: [],
  fileName: (image) => `${image.name}.raw`,
  produce: async (ctx) => [await publishArtifact(ctx, 'raw', raw.fileName(ctx.plan.image), (tmp) => linkOrCopySparse(ctx.rawDisk!, tmp))],
};
