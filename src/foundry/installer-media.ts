/**
 * Repacked distro media: a Debian installer ISO named by the spec (path, URL or assembled
 * `debian-mini` media, checked against its sha256 before use) turned into an unattended installer of the image's role, without
 * mounting anything and without touching the media's own boot files:
 *
 * - the installer initrd of the media's text "Install" entry, with a gzip'd newc archive appended
 *   holding /preseed.cfg (d-i loads it from the initrd before its first question), the role's
 *   payload and the script that applies it, written as a NEW file /kubedos/initrd.gz;
 * - a boot entry using it, added as the default (5 s) to BOTH menus: isolinux (BIOS El Torito;
 *   the media's own isolinux menu stays one entry away) and GRUB (the UEFI El Torito image reads
 *   /boot/grub/grub.cfg, whose own entries stay), on the serial console too;
 * - `xorriso -boot_image any replay`: the El Torito records, isohybrid MBR and GPT stay as the
 *   media had them. Volume id, dates and uuid: the media's volume id, the epoch.
 *
 * The preseed answers every question: locale, keyboard, network (DHCP, the plan's hostname), the
 * plan's mirror and suite, root account locked (no password; the role's authorized keys), the
 * first disk partitioned whole (atomic recipe), no tasks, the plan's packages; its late_command
 * applies the payload (the same files, units and first-boot scripts the disk images carry,
 * except fstab) to /target; the machine powers off when done. Host keys and machine-id are made
 * by the install itself: an installed machine is a node, not an image.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BuildFailedError } from '../errors';
import { COMMON_KERNEL_ARGS } from './boot';
import type { BuildContext } from './context';
import { newcArchive, parentDirs, type CpioEntry } from './cpio';
import { layerIds } from './disk';
import { tempPathFor } from './files';
import { DEBIAN_MINI_EPOCH, debianMiniIso, netbootVersion } from './debian-mini-iso';
import { ASSEMBLED_INSTALLER_ISO } from './installer-iso';
import { sha256File } from './lock';
import { renderPayload } from './payload';
import { securityMirrorOf, type BuildPlan, type InstallerIso } from './plan';
import { gzip } from './tools/gzip';

/** What the repack adds to the media. */
export const INSTALLER_PATHS = {
  initrd: '/kubedos/initrd.gz',
  preseed: '/kubedos/preseed.cfg',
  /** The media's own isolinux.cfg, kept beside it under this name (the `debian` entry). */
  debianIsolinuxCfg: 'isolinux-debian.cfg',
  grubCfg: '/boot/grub/grub.cfg',
} as const;

/** Seconds both menus wait before starting the unattended install. */
const MENU_TIMEOUT_S = 5;

// ---------------------------------------------------------------------------------------------
// the source ISO

async function sha256Matches(file: string, want: string): Promise<{ ok: boolean; got: string }> {
  const got = await sha256File(file);
  return { ok: got === want, got };
}

function mismatch(iso: InstallerIso, got: string, assembledFrom?: string): BuildFailedError {
  if (assembledFrom) {
    return new BuildFailedError(
      `installer media assembled from ${assembledFrom} has sha256 ${got}, but installerIso.sha256 pins ${iso.sha256}`,
      'the build host\'s netboot, GRUB or syslinux packages changed: check them, then pin the new sha256 in installerIso.sha256',
    );
  }
  return new BuildFailedError(
    `installer ISO ${iso.source} has sha256 ${got}, but the spec names ${iso.sha256}`,
    'point installerIso at the intended ISO, or correct installerIso.sha256 (sha256sum prints it)',
  );
}

/** A verified copy in the cache, if one is there (a corrupt one is removed). */
async function cachedIso(cached: string, sha256: string): Promise<boolean> {
  if (!(await fs.access(cached).then(() => true, () => false))) return false;
  if ((await sha256Matches(cached, sha256)).ok) return true;
  await fs.rm(cached, { force: true });
  return false;
}

/** debian-mini media assembled into the cache, kept only if it has the pinned sha256. */
async function assembledIso(ctx: BuildContext, iso: InstallerIso, cached: string): Promise<string> {
  const tmp = tempPathFor(cached);
  const from = `debian-installer-12-netboot-amd64 (${await netbootVersion()})`;
  ctx.log.info({ from }, 'assembling debian-mini installer media');
  try {
    // Its own fixed epoch: the media is an input, pinned by sha256 whatever the spec's epoch.
    const made = await debianMiniIso(tmp, DEBIAN_MINI_EPOCH, ctx.options.signal);
    if (made.sha256 !== iso.sha256) throw mismatch(iso, made.sha256, from);
    await fs.rename(tmp, cached);
    return cached;
  } finally {
    await fs.rm(tmp, { force: true });
  }
}

/**
 * The installer ISO on local disk, verified: a path is checked in place; a URL is downloaded once
 * into `<cacheDir>/installer-iso/<sha256>.iso` (hashed while it streams, kept only if it matches).
 */
export async function obtainInstallerIso(ctx: BuildContext): Promise<string> {
  const iso = ctx.plan.image.installerIso;
  if (!iso) throw new BuildFailedError('installer-media needs image.installerIso (the Debian installer ISO to repack)');
  const cached = path.join(ctx.options.cacheDir, 'installer-iso', `${iso.sha256}.iso`);
  if (iso.source === ASSEMBLED_INSTALLER_ISO) {
    if (await cachedIso(cached, iso.sha256)) return cached;
    await fs.mkdir(path.dirname(cached), { recursive: true });
    return assembledIso(ctx, iso, cached);
  }
  if (!/^https?:\/\//.test(iso.source)) {
    const st = await fs.stat(iso.source).catch(() => undefined);
    if (!st?.isFile()) throw new BuildFailedError(`installer ISO ${iso.source} is not a readable file`, `installerIso.source takes a path (relative to the spec file), an http(s) URL or ${ASSEMBLED_INSTALLER_ISO}`);
    const { ok, got } = await sha256Matches(iso.source, iso.sha256);
    if (!ok) throw mismatch(iso, got);
    return iso.source;
  }
  if (await cachedIso(cached, iso.sha256)) return cached;
  await fs.mkdir(path.dirname(cached), { recursive: true });
  const tmp = tempPathFor(cached);
  ctx.log.info({ url: iso.source }, 'downloading the installer ISO');
  try {
    const res = await fetch(iso.source, { signal: ctx.options.signal });
    if (!res.ok || !res.body) throw new BuildFailedError(`installer ISO ${iso.source}: HTTP ${res.status}`);
    const hash = createHash('sha256');
    const body = Readable.fromWeb(res.body as Parameters<typeof Readable.fromWeb>[0]);
    body.on('data', (chunk: Buffer) => hash.update(chunk));
    await pipeline(body, createWriteStream(tmp));
    const got = hash.digest('hex');
    if (got !== iso.sha256) throw mismatch(iso, got);
    await fs.rename(tmp, cached);
    return cached;
  } catch (err) {
    await fs.rm(tmp, { force: true });
    if (err instanceof BuildFailedError) throw err;
    throw new BuildFailedError(`installer ISO ${iso.source}: ${(err as Error).message}`, 'check the URL and the network', { cause: err });
  }
}

// ---------------------------------------------------------------------------------------------
// what the media holds

export interface ElToritoImage {
  /** 1-based index in the boot catalog. */
  index: number;
  platform: string;
  path?: string;
}

/** The boot images of `xorriso -report_el_torito plain`. */
export function parseElTorito(report: string): ElToritoImage[] {
  const images = new Map<number, ElToritoImage>();
  for (const line of report.split('\n')) {
    const img = /^El Torito boot img\s*:\s*(\d+)\s+(\S+)/.exec(line);
    if (img) images.set(Number(img[1]), { index: Number(img[1]), platform: img[2]! });
    const p = /^El Torito img path\s*:\s*(\d+)\s+(\S.*)$/.exec(line);
    if (p && images.has(Number(p[1]))) images.get(Number(p[1]))!.path = p[2]!.trim();
  }
  return [...images.values()].sort((a, b) => a.index - b.index);
}

/** The paths of `xorriso -find / -type f` output (one quoted path a line). */
export function parseFindOutput(stdout: string): string[] {
  return stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith("'") && l.endsWith("'"))
    .map((l) => l.slice(1, -1).replace(/'"'"'/g, "'"));
}

/**
 * The kernel and initrd of the installer's text-mode install: the first `linux`/`initrd` pair of
 * the media's grub.cfg whose initrd is not the graphical (gtk) or Xen one.
 */
export function installerEntryOf(grubCfg: string): { kernel: string; initrd: string } | undefined {
  let kernel: string | undefined;
  for (const raw of grubCfg.split('\n')) {
    const line = raw.trim();
    const linux = /^linux(efi)?\s+(\S+)/.exec(line);
    if (linux) kernel = linux[2];
    const initrd = /^initrd(efi)?\s+(\S+)/.exec(line);
    if (initrd && kernel) {
      if (!/\/(gtk|xen)\//.test(initrd[2]!)) return { kernel, initrd: initrd[2]! };
      kernel = undefined;
    }
  }
  return undefined;
}

export interface InstallerMedia {
  /** isolinux.bin of the BIOS boot image, and the isolinux.cfg beside it. */
  isolinuxBin: string;
  isolinuxCfg: string;
  kernel: string;
  initrd: string;
}

/** Check that the media boot both ways and find the files the repack changes. */
export function describeMedia(elTorito: readonly ElToritoImage[], files: readonly string[], grubCfg: string | undefined): InstallerMedia {
  const problems: string[] = [];
  const bios = elTorito.find((i) => i.platform === 'BIOS');
  const uefi = elTorito.find((i) => i.platform === 'UEFI');
  if (!bios?.path || !bios.path.endsWith('/isolinux.bin')) problems.push(`no isolinux BIOS El Torito image (found: ${elTorito.map((i) => `${i.platform} ${i.path ?? '?'}`).join(', ') || 'none'})`);
  if (!uefi) problems.push('no UEFI El Torito image');
  const isolinuxCfg = bios?.path ? path.posix.join(path.posix.dirname(bios.path), 'isolinux.cfg') : '';
  if (bios?.path && !files.includes(isolinuxCfg)) problems.push(`no ${isolinuxCfg} beside ${bios.path}`);
  if (grubCfg === undefined) problems.push(`no ${INSTALLER_PATHS.grubCfg} (the UEFI boot menu)`);
  const entry = grubCfg === undefined ? undefined : installerEntryOf(grubCfg);
  if (grubCfg !== undefined && !entry) problems.push(`no text-mode install entry (linux + initrd) in ${INSTALLER_PATHS.grubCfg}`);
  for (const f of [entry?.kernel, entry?.initrd]) if (f && !files.includes(f)) problems.push(`${f} (named by grub.cfg) is not on the media`);
  if (problems.length > 0) {
    throw new BuildFailedError(`the installer ISO is not Debian installer media this format can repack: ${problems.join('; ')}`, 'use a Debian netinst, DVD or mini.iso image (hybrid isolinux + GRUB EFI)');
  }
  return { isolinuxBin: bios!.path!, isolinuxCfg, kernel: entry!.kernel, initrd: entry!.initrd };
}

// ---------------------------------------------------------------------------------------------
// preseed and payload

/** Single-quote for sh. */
function sq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function urlParts(url: string): { protocol: string; host: string; directory: string } {
  const u = new URL(url);
  return { protocol: u.protocol.replace(/:$/, ''), host: u.host, directory: u.pathname.replace(/\/+$/, '') || '/' };
}

/** The kernel arguments of the unattended entry; those after `---` are kept by the installed system. */
export function installerKernelArgs(): string {
  return ['auto=true', 'priority=critical', '---', ...COMMON_KERNEL_ARGS].join(' ');
}

/** The line the preseed's early_command prints on the console once d-i has loaded it. */
export function preseedLoadedLine(imageName: string, inputDigest: string): string {
  return `kubedos: preseed of image ${imageName} (input ${inputDigest.slice(0, 16)}) loaded`;
}

/** The d-i preseed of an image. */
export function preseedConfig(plan: BuildPlan, inputDigest: string): string {
  const { image, base } = plan;
  const mirror = urlParts(base.mirror);
  const security = urlParts(securityMirrorOf(base));
  const comps = new Set(base.components);
  const packages = [...new Set(base.packages)].sort();
  return [
    `# KubeDos: unattended Debian install of image ${image.name} (role ${image.role}), input ${inputDigest}. Generated.`,
    `d-i preseed/early_command string echo ${sq(preseedLoadedLine(image.name, inputDigest))} > /dev/console`,
    '',
    '# Locale and keyboard: no questions',
    'd-i debian-installer/language string en',
    'd-i debian-installer/country string US',
    'd-i debian-installer/locale string en_US.UTF-8',
    'd-i localechooser/supported-locales multiselect en_US.UTF-8',
    'd-i keyboard-configuration/xkb-keymap select us',
    'd-i console-setup/ask_detect boolean false',
    '',
    '# Network: DHCP on the first interface with a link; the image\'s host name',
    'd-i netcfg/choose_interface select auto',
    `d-i netcfg/get_hostname string ${image.hostname}`,
    `d-i netcfg/hostname string ${image.hostname}`,
    'd-i netcfg/get_domain string',
    'd-i netcfg/wireless_wep string',
    'd-i hw-detect/load_firmware boolean true',
    '',
    '# Archive: the plan\'s mirror, suite and security archive',
    'd-i mirror/country string manual',
    `d-i mirror/protocol string ${mirror.protocol}`,
    `d-i mirror/${mirror.protocol}/hostname string ${mirror.host}`,
    `d-i mirror/${mirror.protocol}/directory string ${mirror.directory}`,
    `d-i mirror/${mirror.protocol}/proxy string`,
    `d-i mirror/suite string ${base.suite}`,
    'd-i apt-setup/services-select multiselect security, updates',
    `d-i apt-setup/security_host string ${security.host}`,
    `d-i apt-setup/security_path string ${security.directory}`,
    `d-i apt-setup/contrib boolean ${comps.has('contrib')}`,
    `d-i apt-setup/non-free boolean ${comps.has('non-free')}`,
    `d-i apt-setup/non-free-firmware boolean ${comps.has('non-free-firmware')}`,
    'd-i apt-setup/cdrom/set-first boolean false',
    'd-i apt-setup/disable-cdrom-entries boolean true',
    '',
    '# Accounts: root only, locked (no password); SSH keys come with the payload',
    'd-i passwd/root-login boolean true',
    'd-i passwd/make-user boolean false',
    'd-i passwd/root-password-crypted password !',
    '',
    '# Clock',
    'd-i clock-setup/utc boolean true',
    'd-i time/zone string Etc/UTC',
    'd-i clock-setup/ntp boolean false',
    '',
    '# Disk: the first one, whole, GPT, one root partition (and ESP/BIOS boot and swap as needed)',
    'd-i partman/early_command string debconf-set partman-auto/disk "$(list-devices disk | head -n1)"',
    'd-i partman-auto/method string regular',
    'd-i partman-auto/choose_recipe select atomic',
    'd-i partman-partitioning/choose_label select gpt',
    'd-i partman-partitioning/default_label string gpt',
    'd-i partman-lvm/device_remove_lvm boolean true',
    'd-i partman-md/device_remove_md boolean true',
    'd-i partman-efi/non_efi_system boolean true',
    'd-i partman-partitioning/confirm_write_new_label boolean true',
    'd-i partman/choose_partition select finish',
    'd-i partman/confirm boolean true',
    'd-i partman/confirm_nooverwrite boolean true',
    '',
    '# Packages: no tasks, the plan\'s packages',
    'd-i base-installer/kernel/image string linux-image-amd64',
    'tasksel tasksel/first multiselect',
    `d-i pkgsel/include string ${packages.join(' ')}`,
    'd-i pkgsel/upgrade select none',
    'd-i pkgsel/update-policy select none',
    'popularity-contest popularity-contest/participate boolean false',
    '',
    '# Boot loader on the first disk',
    'd-i grub-installer/only_debian boolean true',
    'd-i grub-installer/with_other_os boolean false',
    'd-i grub-installer/bootdev string default',
    '',
    '# The role\'s payload, then power off',
    'd-i preseed/late_command string sh /kubedos/apply-payload.sh',
    'd-i finish-install/reboot_in_progress note',
    'd-i debian-installer/exit/poweroff boolean true',
    '',
  ].join('\n');
}

/**
 * The role's payload for d-i's late_command: the image's payload entries (fstab excepted: the
 * installer writes the installed disk's) as files under /kubedos/payload plus a script that puts
 * each one into /target (paths resolved by the installed system's own symlinks), then sets
 * owners by name inside it.
 */
export function payloadForInstaller(plan: BuildPlan, inputDigest: string, rootFsUuid: string): { script: string; files: CpioEntry[] } {
  const entries = renderPayload(plan, { inputDigest, rootFsUuid }).filter((e) => e.path !== '/etc/fstab');
  const files: CpioEntry[] = [];
  const lines = [
    '#!/bin/sh',
    `# KubeDos: the payload of image ${plan.image.name} (role ${plan.image.role}), input ${inputDigest},`,
    '# applied to the installed system by the preseed\'s late_command. Generated.',
    'set -e',
    'T=/target',
    'P=/kubedos/payload',
    'd() { mkdir -p "$T$1"; chmod "$2" "$T$1"; }',
    'f() { mkdir -p "$T$(dirname "$2")"; rm -f "$T$2"; cp "$P/$1" "$T$2"; chmod "$3" "$T$2"; }',
    'l() { mkdir -p "$T$(dirname "$1")"; rm -f "$T$1"; ln -s "$2" "$T$1"; }',
    'o() { in-target chown -h "$2" "$1"; }',
  ];
  const owners: string[] = [];
  entries.forEach((e, n) => {
    if (e.kind === 'dir') lines.push(`d ${sq(e.path)} ${e.mode.toString(8).padStart(4, '0')}`);
    else if (e.kind === 'symlink') lines.push(`l ${sq(e.path)} ${sq(e.target)}`);
    else {
      files.push({ kind: 'file', name: `kubedos/payload/${n}`, mode: 0o600, content: e.content });
      lines.push(`f ${n} ${sq(e.path)} ${e.mode.toString(8).padStart(4, '0')}`);
    }
    if (e.kind !== 'symlink' && e.owner !== 'root:root' && e.owner !== '0:0') owners.push(`o ${sq(e.path)} ${sq(e.owner)}`);
  });
  lines.push(...owners, `echo ${sq(`kubedos: payload of image ${plan.image.name} applied`)} > /dev/console`, '');
  return { script: lines.join('\n'), files };
}

/** The archive appended to the installer initrd: preseed, payload, apply script. */
export function installerInitrdArchive(plan: BuildPlan, inputDigest: string, rootFsUuid: string, epoch: number): Buffer {
  const { script, files } = payloadForInstaller(plan, inputDigest, rootFsUuid);
  const own: CpioEntry[] = [
    { kind: 'file', name: 'preseed.cfg', mode: 0o644, content: Buffer.from(preseedConfig(plan, inputDigest)) },
    { kind: 'file', name: 'kubedos/apply-payload.sh', mode: 0o755, content: Buffer.from(script) },
    ...files,
  ];
  return newcArchive([...parentDirs(own.map((e) => e.name)), ...own], epoch);
}

// ---------------------------------------------------------------------------------------------
// boot menus

/** The media's grub.cfg with the unattended entry first and made the default. */
export function installerGrubConfig(original: string, plan: BuildPlan, kernel: string): string {
  return [
    `# KubeDos: unattended install of image ${plan.image.name} (role ${plan.image.role}); the media's own menu follows.`,
    `menuentry 'Automated install of ${plan.image.name} (KubeDos; erases the first disk)' --id kubedos {`,
    `    linux    ${kernel} ${installerKernelArgs()}`,
    `    initrd   ${INSTALLER_PATHS.initrd}`,
    '}',
    original.trimEnd(),
    '# KubeDos: start the unattended install unless another entry is chosen',
    'set default=kubedos',
    `set timeout=${MENU_TIMEOUT_S}`,
    '',
  ].join('\n');
}

/** isolinux.cfg: the unattended entry as default, the media's own menu one entry away. */
export function installerIsolinuxConfig(plan: BuildPlan, kernel: string, isolinuxDir: string): string {
  const dir = isolinuxDir.endsWith('/') ? isolinuxDir : `${isolinuxDir}/`;
  return [
    `# KubeDos: unattended install of image ${plan.image.name} (role ${plan.image.role}). Generated.`,
    'serial 0 115200',
    'prompt 1',
    `timeout ${MENU_TIMEOUT_S * 10}`,
    'default kubedos',
    `say   kubedos  Automated install of ${plan.image.name} (erases the first disk; starts in ${MENU_TIMEOUT_S} s)`,
    "say   debian   The installer's own menu",
    'label kubedos',
    `  kernel ${kernel}`,
    `  append initrd=${INSTALLER_PATHS.initrd} ${installerKernelArgs()}`,
    'label debian',
    `  config ${dir}${INSTALLER_PATHS.debianIsolinuxCfg} ${dir}`,
    '',
  ].join('\n');
}

/**
 * The new installer initrd: the media's, padded to 4 bytes, then the gzip'd kubedos archive
 * (`gzip -n`): the kernel unpacks concatenated archives, and d-i reads /preseed.cfg from it.
 */
export async function writeInstallerInitrd(ctx: BuildContext, mediaInitrd: string, out: string): Promise<void> {
  const archive = `${out}.cpio`;
  await fs.writeFile(archive, installerInitrdArchive(ctx.plan, ctx.inputDigest!, layerIds(ctx.layer!.digest).rootFsUuid, ctx.plan.sourceDateEpoch));
  await gzip(archive, 9, { signal: ctx.options.signal });
  const base = await fs.readFile(mediaInitrd);
  await fs.writeFile(out, Buffer.concat([base, Buffer.alloc((4 - (base.length % 4)) % 4), await fs.readFile(`${archive}.gz`)]));
  await fs.rm(`${archive}.gz`, { force: true });
}
