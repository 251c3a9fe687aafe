/**
 * AWS: the disk as a streamOptimized VMDK, one of the formats `aws ec2 import-snapshot` accepts
 * (a fraction of the raw disk's size to upload to S3; the same file the vmdk and ova formats use,
 * made once per build). The disk is GPT with an EFI system partition and boots only with UEFI:
 * register the snapshot with `--boot-mode uefi` (AMI_IMPORT), which AWS supports on Nitro
 * instances. Nitro exposes EBS volumes as NVMe and the network as ENA: the build checks that both
 * drivers are in the initramfs.
 */
import type { BuildContext } from '../context';
import { linkOrCopySparse } from '../files';
import { publishArtifact, type OutputFormat } from './format';
import { ROOT_FS_MODULES } from './early-boot';
import { streamOptimizedVmdk } from './vmdk';

/** Modules an EC2 Nitro instance needs early: NVMe (EBS root volume) and ENA (network). */
export const AMI_EARLY_MODULES = ['nvme', 'ena'] as const;

/** Settings `import-snapshot` / `register-image` need for this disk. */
export const AMI_IMPORT = {
  diskContainerFormat: 'VMDK',
  architecture: 'x86_64',
  bootMode: 'uefi',
  enaSupport: true,
  virtualizationType: 'hvm',
  rootDeviceName: '/dev/xvda',
} as const;

export const ami: OutputFormat<'ami'> = {
  name: 'ami',
  description: 'AWS: streamOptimized VMDK for import-snapshot, UEFI boot mode, NVMe and ENA drivers checked',
  consumes: 'disk',
  earlyBoot: { modules: [...ROOT_FS_MODULES, ...AMI_EARLY_MODULES], purpose: 'ami: EC2 Nitro (NVMe storage, ENA network)' },
  tools: ['qemu-img'],
  fileName: (image) => `${image.name}.ami.vmdk`,
  produce: async (ctx: BuildContext) => {
    const src = await streamOptimizedVmdk(ctx);
    return [await publishArtifact(ctx, 'ami', ami.fileName(ctx.plan.image), (tmp) => linkOrCopySparse(src, tmp))];
  },
};
