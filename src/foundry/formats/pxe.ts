/**
 * PXE bundle: the live system (see ../live.ts) as four files beside each other in the output
 * directory, served as they are over TFTP or HTTP:
 * - `<name>.pxe.ipxe`: the iPXE script (the entry point: DHCP boot file, or `chain` it);
 * - `<name>.pxe.vmlinuz`, `<name>.pxe.initrd`: the layer's kernel and the live initrd;
 * - `<name>.pxe.root.cpio`: the root squashfs inside a one-file newc archive, so that any boot
 *   loader (iPXE under BIOS or UEFI, old or new, GRUB, PXELINUX) passes it as a second initrd
 *   and the kernel unpacks it to /kubedos/root.squashfs. No network code runs in the initrd.
 * The script names the other files relative to its own URL.
 */
import * as path from 'node:path';
import type { BuildContext } from '../context';
import { writeNewcArchive } from '../cpio';
import { linkOrCopySparse } from '../files';
import { LIVE_PATHS, liveInitrd, liveKernel, liveKernelArgs, liveRootSquashfs } from '../live';
import type { ImagePlan } from '../plan';
import { publishArtifact, type OutputFormat } from './format';
import { VM_OR_SERVER_MODULES } from './early-boot';
import * as fs from 'node:fs/promises';

/** The bundle's file names, entry point first. */
export function pxeFiles(image: Pick<ImagePlan, 'name'>): { script: string; kernel: string; initrd: string; root: string } {
  const base = `${image.name}.pxe`;
  return { script: `${base}.ipxe`, kernel: `${base}.vmlinuz`, initrd: `${base}.initrd`, root: `${base}.root.cpio` };
}

/** The iPXE script. `initrd=` names the initrds for the kernel's EFI stub (iPXE under UEFI). */
export function ipxeScript(ctx: BuildContext): string {
  const { image } = ctx.plan;
  const f = pxeFiles(image);
  const args = liveKernelArgs({ root: LIVE_PATHS.initramfsRoot });
  return [
    '#!ipxe',
    `# KubeDos image ${image.name} (role ${image.role}), input ${ctx.inputDigest}: the live system over the network.`,
    '# The other files of the bundle are named relative to this script (serve them beside it, TFTP or HTTP).',
    `kernel ${f.kernel} initrd=${f.initrd} initrd=${f.root} ${args}`,
    `initrd ${f.initrd}`,
    `initrd ${f.root}`,
    'boot',
    '',
  ].join('\n');
}

export const pxe: OutputFormat<'pxe'> = {
  name: 'pxe',
  description: 'Network boot bundle: iPXE script, kernel, initrd, squashfs root (live, tmpfs overlay)',
  consumes: 'live system',
  earlyBoot: { modules: VM_OR_SERVER_MODULES, purpose: 'pxe: VMs and servers that install to their disk' },
  tools: ['mksquashfs'],
  fileName: (image) => pxeFiles(image).script,
  produce: async (ctx: BuildContext) => {
    const f = pxeFiles(ctx.plan.image);
    const epoch = ctx.plan.sourceDateEpoch;
    const [kernel, initrd, squashfs] = await Promise.all([liveKernel(ctx), liveInitrd(ctx), liveRootSquashfs(ctx)]);
    const name = LIVE_PATHS.initramfsRoot.slice(1);
    return [
      await publishArtifact(ctx, 'pxe', f.script, (tmp) => fs.writeFile(tmp, ipxeScript(ctx))),
      await publishArtifact(ctx, 'pxe', f.kernel, (tmp) => linkOrCopySparse(kernel, tmp)),
      await publishArtifact(ctx, 'pxe', f.initrd, (tmp) => linkOrCopySparse(initrd, tmp)),
      await publishArtifact(ctx, 'pxe', f.root, (tmp) =>
        writeNewcArchive(tmp, [{ kind: 'dir', name: path.posix.dirname(name), mode: 0o755 }, { kind: 'file', name, mode: 0o644, content: { hostFile: squashfs } }], epoch),
      ),
    ];
  },
};
