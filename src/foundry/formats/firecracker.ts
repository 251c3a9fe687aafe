/**
 * Firecracker / Kata microVM bundle: four artifacts of format `firecracker`, side by side in the
 * output directory (kept apart, not tarred, so that the content-addressed store shares the kernel
 * and initrd of every image of a layer, and a deploy pulls each file by digest):
 *
 * - `<name>.firecracker.json`: the `firecracker --config-file` document naming the others by
 *   relative path (run Firecracker in the bundle's directory). Identity is not in the image: the
 *   deploy driver puts it into MMDS (V2, on the `eth0` interface the config declares) and sets the
 *   tap device, MAC, vCPUs and memory of each microVM (src/targets/mmds.ts makes the document).
 *   In the guest, the MMDS reader (../mmds-reader.ts, a kubedos-firstboot hook turned on by
 *   `kubedos.metadata=mmds` in boot_args) applies it; with no metadata at all the node makes its
 *   own host keys and still reaches readiness.
 * - `<name>.firecracker.vmlinux`: the uncompressed ELF kernel extracted from the layer's vmlinuz
 *   (kernel.ts; PVH entry note checked).
 * - `<name>.firecracker.initrd`: the image's own initramfs, unchanged.
 * - `<name>.firecracker.rootfs.ext4`: the root partition of the build's disk (payload applied,
 *   fstab UUID intact), sparse. Attach a writable copy per microVM.
 *
 * How the kernel finds its disk: Debian builds virtio_mmio, virtio_blk and ext4 as modules and
 * its kernel lacks VIRTIO_MMIO_CMDLINE_DEVICES, so Firecracker's `virtio_mmio.device=` arguments
 * mean nothing to it. Firecracker >= 1.8 also describes every virtio-mmio device in the ACPI DSDT
 * (_HID LNRO0005); the image's own initramfs (initramfs-tools, MODULES=list with virtio_mmio) runs udev, which
 * loads virtio_mmio by that ACPI modalias, then virtio_blk and ext4, and mounts `root=/dev/vda`
 * (appended by Firecracker for the root drive). The build checks that the three modules are in
 * the initramfs. Firecracker older than 1.8 (no ACPI) cannot boot this kernel.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { BuildContext } from '../context';
import { linkOrCopySparse } from '../files';
import { extractVmlinux } from '../kernel';
import { sha256Hex, type ImagePlan } from '../plan';
import { rootFilesystemImage } from '../root-image';
import { MMDS_KERNEL_ARG } from '../mmds-reader';
import { publishArtifact, type OutputFormat } from './format';

/**
 * Kernel arguments of the bundle. Serial console on ttyS0; reboot by keyboard controller reset
 * and panic → reboot, which Firecracker turns into a VM exit; no PCI bus to probe; the i8042
 * flags skip probing the controller Firecracker only partly emulates; `kubedos.metadata=mmds`
 * turns on the image's MMDS reader, which applies the node's identity from MMDS at first boot.
 */
export const FIRECRACKER_BOOT_ARGS = `console=ttyS0 reboot=k panic=1 pci=off i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd ${MMDS_KERNEL_ARG}`;

/** Modules the kernel needs from the initramfs to reach its root filesystem. */
export const FIRECRACKER_EARLY_MODULES = ['virtio_mmio', 'virtio_blk', 'ext4'] as const;

/** The guest interface MMDS answers on (169.254.169.254). */
export const FIRECRACKER_MMDS_IFACE = 'eth0';

/** The subset of Firecracker's `--config-file` document the bundle fills. */
export interface FirecrackerConfig {
  'boot-source': { kernel_image_path: string; initrd_path: string; boot_args: string };
  drives: { drive_id: string; path_on_host: string; is_root_device: boolean; is_read_only: boolean }[];
  'machine-config': { vcpu_count: number; mem_size_mib: number; smt: boolean };
  'network-interfaces': { iface_id: string; host_dev_name: string; guest_mac: string }[];
  'mmds-config': { version: 'V2'; network_interfaces: string[]; ipv4_address: string };
}

export interface FirecrackerFiles {
  config: string;
  kernel: string;
  initrd: string;
  rootfs: string;
}

export function firecrackerFiles(image: Pick<ImagePlan, 'name'>): FirecrackerFiles {
  const base = `${image.name}.firecracker`;
  return { config: `${base}.json`, kernel: `${base}.vmlinux`, initrd: `${base}.initrd`, rootfs: `${base}.rootfs.ext4` };
}

/** A locally administered unicast MAC derived from the input digest (the deploy driver sets each VM's). */
function derivedMac(digest: string): string {
  const h = sha256Hex(`${digest}:firecracker-mac`);
  return ['06', h.slice(0, 2), h.slice(2, 4), h.slice(4, 6), h.slice(6, 8), h.slice(8, 10)].join(':');
}

/**
 * The config document. vCPUs and memory are the Firecracker target's defaults (1, 512 MiB);
 * `tap0` is a placeholder for the host tap device of each microVM.
 */
export function firecrackerConfig(image: Pick<ImagePlan, 'name'>, inputDigest: string): FirecrackerConfig {
  const files = firecrackerFiles(image);
  return {
    'boot-source': { kernel_image_path: files.kernel, initrd_path: files.initrd, boot_args: FIRECRACKER_BOOT_ARGS },
    drives: [{ drive_id: 'rootfs', path_on_host: files.rootfs, is_root_device: true, is_read_only: false }],
    'machine-config': { vcpu_count: 1, mem_size_mib: 512, smt: false },
    'network-interfaces': [{ iface_id: FIRECRACKER_MMDS_IFACE, host_dev_name: 'tap0', guest_mac: derivedMac(inputDigest) }],
    'mmds-config': { version: 'V2', network_interfaces: [FIRECRACKER_MMDS_IFACE], ipv4_address: '169.254.169.254' },
  };
}

/**
 * The command line the guest kernel receives from Firecracker for this config: `boot_args`, then,
 * for a root drive without a partuuid, `root=/dev/vda` and `rw` or `ro` (Firecracker's builder
 * appends them; its legacy `virtio_mmio.device=` arguments are ignored by Debian's kernel).
 */
export function firecrackerKernelCmdline(config: FirecrackerConfig): string {
  const root = config.drives.find((d) => d.is_root_device);
  const args = [config['boot-source'].boot_args];
  if (root) args.push('root=/dev/vda', root.is_read_only ? 'ro' : 'rw');
  return args.join(' ');
}

export const firecracker: OutputFormat<'firecracker'> = {
  name: 'firecracker',
  description: 'Firecracker/Kata microVM bundle: config JSON, ELF vmlinux, initrd, ext4 rootfs',
  consumes: 'root filesystem and kernel',
  earlyBoot: { modules: FIRECRACKER_EARLY_MODULES, purpose: 'firecracker: virtio-mmio root disk' },
  tools: ['xz'],
  fileName: (image) => firecrackerFiles(image).config,
  produce: async (ctx: BuildContext) => {
    const image = ctx.plan.image;
    const layer = ctx.layer!;
    const files = firecrackerFiles(image);
    const dir = path.join(ctx.workDir, 'firecracker');
    await fs.mkdir(dir, { recursive: true });
    const vmlinux = path.join(dir, 'vmlinux');
    const configFile = path.join(dir, 'config.json');
    await fs.writeFile(configFile, `${JSON.stringify(firecrackerConfig(image, ctx.inputDigest!), null, 2)}\n`);
    const [, rootfs] = await Promise.all([extractVmlinux(layer.kernel, vmlinux, ctx.options.signal), rootFilesystemImage(ctx)]);
    // The layer's files are copied, never linked: the cached layer must not share an inode with an artifact.
    return [
      await publishArtifact(ctx, 'firecracker', files.config, (tmp) => linkOrCopySparse(configFile, tmp)),
      await publishArtifact(ctx, 'firecracker', files.kernel, (tmp) => linkOrCopySparse(vmlinux, tmp)),
      await publishArtifact(ctx, 'firecracker', files.initrd, (tmp) => fs.copyFile(layer.initrd, tmp)),
      await publishArtifact(ctx, 'firecracker', files.rootfs, (tmp) => linkOrCopySparse(rootfs, tmp)),
    ];
  },
};
