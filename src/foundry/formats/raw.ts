import { linkOrCopySparse } from '../files';
import { publishArtifact, type OutputFormat } from './format';
import { VM_OR_SERVER_MODULES } from './early-boot';

/** The GPT disk itself, sparse. */
export const raw: OutputFormat<'raw'> = {
  name: 'raw',
  description: 'Sparse raw GPT disk image (UEFI); QEMU/KVM, Proxmox, dd to bare metal',
  consumes: 'disk',
  earlyBoot: { modules: VM_OR_SERVER_MODULES, purpose: 'raw: KVM guests and physical servers' },
  tools: [],
  fileName: (image) => `${image.name}.raw`,
  produce: async (ctx) => [await publishArtifact(ctx, 'raw', raw.fileName(ctx.plan.image), (tmp) => linkOrCopySparse(ctx.rawDisk!, tmp))],
};
