/**
 * Hybrid BIOS+UEFI ISO of the image (one file, also dd-able to a USB stick), laid out like
 * Debian's own media:
 * - BIOS: isolinux El Torito image plus the isohybrid MBR; UEFI: an El Torito FAT image holding a
 *   grub-mkimage BOOTX64.EFI (also exposed as a GPT partition) that finds the medium by a marker
 *   file. Both menus offer the same two entries, on the serial console too:
 *   - `live` (default after 5 s): the live system (see ../live.ts), the image's root filesystem
 *     as a read-only squashfs under a tmpfs overlay;
 *   - `install`: writes the raw disk image to the first disk that is not the boot medium,
 *     unattended, then powers off. The installed disk boots (UEFI) like the raw format.
 * - Volume id `KUBEDOS_<8 hex digits of the input digest>`; dates and ids from the epoch.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { BuildContext } from '../context';
import { linkOrCopySparse } from '../files';
import { installerDiskSquashfs, LIVE_PATHS, liveInitrd, liveKernel, liveKernelArgs, liveRootSquashfs } from '../live';
import { sha256Hex, type ImagePlan } from '../plan';
import { grubMkimage } from '../tools/grub-mkimage';
import { mformat } from '../tools/mformat';
import { mcopy, mmd } from '../tools/mtools';
import { xorrisoHybrid } from '../tools/xorriso';
import { publishArtifact, type OutputFormat } from './format';
import { VM_OR_SERVER_MODULES } from './early-boot';

/** Boot files taken from the builder's packages (isolinux, syslinux-common, grub-efi-amd64-bin). */
export const ISO_BOOT_FILES = {
  isolinuxBin: '/usr/lib/ISOLINUX/isolinux.bin',
  isohybridMbr: '/usr/lib/ISOLINUX/isohdpfx.bin',
  ldlinux: '/usr/lib/syslinux/modules/bios/ldlinux.c32',
} as const;

/** GRUB modules of the UEFI boot image: find the medium, read ISO 9660, boot Linux, serial console. */
export const GRUB_EFI_MODULES = [
  'part_gpt', 'part_msdos', 'fat', 'iso9660', 'search', 'search_fs_file', 'normal', 'configfile',
  'linux', 'boot', 'echo', 'test', 'serial', 'terminal', 'efi_gop', 'efi_uga',
] as const;

/** The ISO 9660 volume id of an image's media (also what the live initrd looks for). */
export function isoVolumeId(inputDigest: string): string {
  return `KUBEDOS_${inputDigest.slice(0, 8).toUpperCase()}`;
}

export interface BootEntry {
  id: 'live' | 'install';
  title: string;
  kernel: string;
  initrd: string;
  args: string;
}

/** The two entries of both boot menus. */
export function isoBootEntries(image: Pick<ImagePlan, 'name'>, volid: string): BootEntry[] {
  const common = { kernel: LIVE_PATHS.kernel, initrd: LIVE_PATHS.initrd };
  return [
    { id: 'live', title: `KubeDos ${image.name}: live system (changes stay in RAM)`, ...common, args: liveKernelArgs({ mediaLabel: volid, root: LIVE_PATHS.root }) },
    {
      id: 'install',
      title: `KubeDos ${image.name}: INSTALL to the first disk (erases it), then power off`,
      ...common,
      args: liveKernelArgs({ mediaLabel: volid, root: LIVE_PATHS.root, install: 'auto' }),
    },
  ];
}

/** Seconds both menus wait before booting the first (live) entry. */
const MENU_TIMEOUT_S = 5;

/** isolinux (BIOS): a `boot:` prompt on the console and COM1; type an entry's id. */
export function isolinuxConfig(entries: readonly BootEntry[]): string {
  return [
    'serial 0 115200',
    'prompt 1',
    `timeout ${MENU_TIMEOUT_S * 10}`,
    `default ${entries[0]!.id}`,
    ...entries.map((e) => `say   ${e.id.padEnd(8)} ${e.title}`),
    `say Type an entry and Enter; "${entries[0]!.id}" boots in ${MENU_TIMEOUT_S} s.`,
    ...entries.flatMap((e) => [`label ${e.id}`, `  kernel ${e.kernel}`, `  append initrd=${e.initrd} ${e.args}`]),
    '',
  ].join('\n');
}

/** GRUB (UEFI): a menu on the firmware console (OVMF mirrors it on the serial port); hotkey = first letter. */
export function grubConfig(entries: readonly BootEntry[]): string {
  return [
    `set timeout=${MENU_TIMEOUT_S}`,
    `set default=${entries[0]!.id}`,
    ...entries.flatMap((e) => [
      `menuentry '${e.title}' --id ${e.id} --hotkey=${e.id[0]} {`,
      `\tlinux ${e.kernel} ${e.args}`,
      `\tinitrd ${e.initrd}`,
      '}',
    ]),
    '',
  ].join('\n');
}

/** Embedded in BOOTX64.EFI: find this medium by its marker file, then read its grub.cfg. */
export function grubEarlyConfig(marker: string): string {
  return [`search --no-floppy --set=root --file ${marker}`, 'set prefix=($root)/boot/grub', 'configfile ($root)/boot/grub/grub.cfg', ''].join('\n');
}

/** Set the mtime (and atime) of every entry of a tree, symlinks included, to `epoch`. */
export async function stampTree(root: string, epoch: number): Promise<void> {
  for (const e of await fs.readdir(root, { withFileTypes: true })) {
    const p = path.join(root, e.name);
    if (e.isDirectory()) await stampTree(p, epoch);
    await fs.lutimes(p, epoch, epoch);
  }
  await fs.lutimes(root, epoch, epoch);
}

export interface GrubEfiBootImageArgs {
  /** Scratch directory; the image is written here as efi.img. */
  dir: string;
  /** Embedded in BOOTX64.EFI: finds the medium and reads its configuration. */
  earlyConfig: string;
  /** FAT volume serial (8 hex digits) and label. */
  serial: string;
  label: string;
  epoch: number;
  signal?: AbortSignal;
  /** @default GRUB_EFI_MODULES */
  modules?: readonly string[];
}

/**
 * A UEFI El Torito boot image: a small FAT (mformat, 2.88 MB geometry) holding a grub-mkimage
 * \EFI\BOOT\BOOTX64.EFI with an embedded early config. Deterministic for fixed inputs.
 */
export async function grubEfiBootImage(a: GrubEfiBootImageArgs): Promise<string> {
  const run = { signal: a.signal, sourceDateEpoch: a.epoch };
  const early = path.join(a.dir, 'grub-early.cfg');
  await fs.writeFile(early, a.earlyConfig);
  const efi = path.join(a.dir, 'BOOTX64.EFI');
  await grubMkimage({ format: 'x86_64-efi', out: efi, earlyConfig: early, prefix: '/boot/grub', modules: a.modules ?? GRUB_EFI_MODULES }, run);
  await fs.utimes(efi, a.epoch, a.epoch);
  const img = path.join(a.dir, 'efi.img');
  await fs.rm(img, { force: true });
  await mformat({ image: img, sizeKiB: 2880, serial: a.serial, label: a.label }, run);
  await mmd(img, '/EFI', run);
  await mmd(img, '/EFI/BOOT', run);
  await mcopy(img, efi, '/EFI/BOOT/BOOTX64.EFI', run);
  await fs.utimes(img, a.epoch, a.epoch);
  return img;
}

export const iso: OutputFormat<'iso'> = {
  name: 'iso',
  description: 'Hybrid BIOS+UEFI ISO: live system (squashfs root, tmpfs overlay) or unattended install to the first disk',
  consumes: 'live system',
  earlyBoot: { modules: VM_OR_SERVER_MODULES, purpose: 'iso: the boot medium and the installed disk on VMs and servers' },
  tools: ['xorriso', 'mksquashfs', 'grub-mkimage', 'mformat', 'mcopy'],
  fileName: (image) => `${image.name}.iso`,
  produce: async (ctx: BuildContext) => {
    const { image } = ctx.plan;
    const epoch = ctx.plan.sourceDateEpoch;
    const volid = isoVolumeId(ctx.inputDigest!);
    const marker = `/.disk/kubedos-${ctx.inputDigest!.slice(0, 16)}`;
    const [kernel, initrd, root] = await Promise.all([liveKernel(ctx), liveInitrd(ctx), liveRootSquashfs(ctx)]);
    const disk = await installerDiskSquashfs(ctx);

    const work = path.join(ctx.workDir, 'iso');
    const tree = path.join(work, 'tree');
    await fs.rm(work, { recursive: true, force: true });
    await fs.mkdir(tree, { recursive: true });
    // Files of this build are linked in; the builder's own files are copied (their times get stamped).
    const put = async (isoPath: string, from: { link: string } | { copy: string } | { text: string }) => {
      const dest = path.join(tree, isoPath);
      await fs.mkdir(path.dirname(dest), { recursive: true });
      if ('text' in from) await fs.writeFile(dest, from.text);
      else if ('copy' in from) await fs.copyFile(from.copy, dest);
      else await linkOrCopySparse(from.link, dest);
    };
    const entries = isoBootEntries(image, volid);
    await put('.disk/info', { text: `KubeDos image ${image.name} (role ${image.role}), input ${ctx.inputDigest}\n` });
    await put(marker, { text: '' });
    await put('isolinux/isolinux.bin', { copy: ISO_BOOT_FILES.isolinuxBin });
    await put('isolinux/ldlinux.c32', { copy: ISO_BOOT_FILES.ldlinux });
    await put('isolinux/isolinux.cfg', { text: isolinuxConfig(entries) });
    await put('boot/grub/grub.cfg', { text: grubConfig(entries) });
    const efiImage = await grubEfiBootImage({
      dir: work, earlyConfig: grubEarlyConfig(marker), serial: sha256Hex(`${ctx.inputDigest}:iso-efi-image`).slice(0, 8), label: 'KUBEDOS_EFI', epoch, signal: ctx.options.signal,
    });
    await put('boot/grub/efi.img', { link: efiImage });
    await put(LIVE_PATHS.kernel, { link: kernel });
    await put(LIVE_PATHS.initrd, { link: initrd });
    await put(LIVE_PATHS.root, { link: root });
    await put(LIVE_PATHS.disk, { link: disk });
    await stampTree(tree, epoch);

    return [
      await publishArtifact(ctx, 'iso', iso.fileName(image), async (tmp) => {
        await xorrisoHybrid(
          {
            out: tmp, volid, sourceDir: tree, isolinuxBin: 'isolinux/isolinux.bin', bootCatalog: 'isolinux/boot.cat',
            isohybridMbr: ISO_BOOT_FILES.isohybridMbr, efiImage: 'boot/grub/efi.img',
          },
          epoch,
          { signal: ctx.options.signal },
        );
      }),
    ];
  },
};
