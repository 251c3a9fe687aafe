/**
 * Debian installer media assembled on the build host (`installerIso.source: debian-mini`), for
 * sites that cannot fetch an installer ISO: built from the debian-installer-12-netboot-amd64
 * package (scripts/setup installs it) the way Debian's mini.iso is laid out: kernel and initrd at the root, the d-i isolinux menu (boot-screens, paths rewritten to the
 * root) behind isolinux.bin as the BIOS El Torito image with the isohybrid MBR, GRUB's modules and
 * the d-i grub.cfg under /boot/grub, and a UEFI El Torito FAT image whose grub-mkimage
 * BOOTX64.EFI finds the medium by /.disk/info. The installer-media format then repacks it like
 * any user-supplied ISO. Deterministic (fixed epoch): its sha256 changes only with the host's
 * netboot, GRUB or syslinux packages, and the spec pins it like any other ISO.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { BuildFailedError } from '../errors';
import { GRUB_EFI_MODULES, grubEfiBootImage, ISO_BOOT_FILES, stampTree } from './formats/iso';
import { sha256File } from './lock';
import { xorrisoHybrid } from './tools/xorriso';

/** What the package installs. */
export const NETBOOT = {
  dir: '/usr/lib/debian-installer/images/12/amd64/text',
  get amd64() {
    return path.join(this.dir, 'debian-installer/amd64');
  },
} as const;

const SYSLINUX_BIOS = '/usr/lib/syslinux/modules/bios';
const GRUB_EFI_MODULES_DIR = '/usr/lib/grub/x86_64-efi';

/** d-i's config paths (relative to the TFTP root) made relative to the ISO root, as mini.iso has them. */
function toIsoRoot(cfg: string): string {
  return cfg.replace(/\/?debian-installer\/amd64\/boot-screens\//g, '').replace(/(\/?)debian-installer\/amd64\//g, '$1');
}

export interface MiniIso {
  path: string;
  sha256: string;
  volid: string;
}

/** The installed netboot package's version line, or a clear error naming the package. */
export async function netbootVersion(): Promise<string> {
  try {
    return (await fs.readFile(path.join(NETBOOT.dir, 'version.info'), 'utf8')).replace(/\s+/g, ' ').trim();
  } catch {
    throw new BuildFailedError(
      `installer media: ${NETBOOT.dir} is missing, so debian-mini media cannot be assembled`,
      'install debian-installer-12-netboot-amd64 on the build host (scripts/setup does), or point installerIso.source at an installer ISO',
    );
  }
}

/** Timestamps inside assembled media (2023-11-14): fixed, so the media's sha256 depends on its inputs only. */
export const DEBIAN_MINI_EPOCH = 1700000000;

/** Assemble the mini.iso-like installer media at `out` (scratch files in `out`.d). */
export async function debianMiniIso(out: string, epoch = DEBIAN_MINI_EPOCH, signal?: AbortSignal): Promise<MiniIso> {
  const work = `${out}.d`;
  const tree = path.join(work, 'tree');
  const version = await netbootVersion();
  await fs.rm(work, { recursive: true, force: true });
  await fs.mkdir(path.join(tree, '.disk'), { recursive: true });
  await fs.writeFile(path.join(tree, '.disk/info'), `Debian GNU/Linux 12 "Bookworm" - mini.iso amd64 (assembled by KubeDos; ${version})\n`);
  await fs.copyFile(path.join(NETBOOT.amd64, 'linux'), path.join(tree, 'linux'));
  await fs.copyFile(path.join(NETBOOT.amd64, 'initrd.gz'), path.join(tree, 'initrd.gz'));

  // BIOS: isolinux with d-i's own menu; the c32 modules must match isolinux.bin's version.
  await fs.copyFile(ISO_BOOT_FILES.isolinuxBin, path.join(tree, 'isolinux.bin'));
  for (const m of ['ldlinux.c32', 'vesamenu.c32', 'libcom32.c32', 'libutil.c32']) await fs.copyFile(path.join(SYSLINUX_BIOS, m), path.join(tree, m));
  const screens = path.join(NETBOOT.amd64, 'boot-screens');
  for (const f of await fs.readdir(screens)) {
    if (f.endsWith('.cfg')) await fs.writeFile(path.join(tree, f), toIsoRoot(await fs.readFile(path.join(screens, f), 'utf8')));
    else if (f.endsWith('.txt') || f.endsWith('.png')) await fs.copyFile(path.join(screens, f), path.join(tree, f));
  }
  await fs.rename(path.join(tree, 'syslinux.cfg'), path.join(tree, 'isolinux.cfg'));

  // UEFI: GRUB (core image and modules of the same grub-efi-amd64-bin), d-i's grub.cfg.
  const grub = path.join(tree, 'boot/grub');
  await fs.mkdir(path.join(grub, 'x86_64-efi'), { recursive: true });
  await fs.writeFile(path.join(grub, 'grub.cfg'), toIsoRoot(await fs.readFile(path.join(NETBOOT.amd64, 'grub/grub.cfg'), 'utf8')));
  await fs.copyFile(path.join(NETBOOT.amd64, 'grub/font.pf2'), path.join(grub, 'font.pf2'));
  for (const f of await fs.readdir(GRUB_EFI_MODULES_DIR)) {
    if (/\.(mod|lst)$/.test(f)) await fs.copyFile(path.join(GRUB_EFI_MODULES_DIR, f), path.join(grub, 'x86_64-efi', f));
  }
  const efiImage = await grubEfiBootImage({
    dir: work,
    earlyConfig: ['search --no-floppy --set=root --file /.disk/info', 'set prefix=($root)/boot/grub', 'configfile $prefix/grub.cfg', ''].join('\n'),
    serial: 'd1d1d1d1',
    label: 'DEBIAN_EFI',
    epoch,
    // d-i's grub.cfg loads a font and a graphical terminal, and plays a tune.
    modules: [...GRUB_EFI_MODULES, 'font', 'gfxterm', 'png', 'play', 'all_video'],
    signal,
  });
  await fs.copyFile(efiImage, path.join(grub, 'efi.img'));
  await stampTree(tree, epoch);

  const volid = 'DEBIAN_12_MINI';
  await fs.rm(out, { force: true });
  await xorrisoHybrid(
    { out, volid, sourceDir: tree, isolinuxBin: 'isolinux.bin', bootCatalog: 'boot.cat', isohybridMbr: ISO_BOOT_FILES.isohybridMbr, efiImage: 'boot/grub/efi.img' },
    epoch,
    { signal },
  );
  await fs.rm(work, { recursive: true, force: true });
  return { path: out, sha256: await sha256File(out), volid };
}
