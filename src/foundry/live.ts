/**
 * The live system shared by the `iso` and `pxe` formats: the image's root filesystem as a
 * read-only squashfs, run under a tmpfs overlay by a small initramfs-tools boot script.
 *
 * - Root squashfs: the root filesystem of the finished disk (payload included), copied out with
 *   debugfs `rdump` (no mounts) and packed by mksquashfs. rdump restores modes before owners, and
 *   chown clears setuid/setgid bits, so those are put back from the filesystem itself (debugfs
 *   `stat` of every path that carries them in the layer or the payload). Device nodes are not
 *   copied (the initramfs mounts devtmpfs on /dev); extended attributes are not kept.
 * - Initrd: the layer's own initrd (made by initramfs-tools in the image) with one uncompressed
 *   newc archive appended: /scripts/kubedos (selected by `boot=kubedos`) and the kernel modules it
 *   needs that a stock initrd may lack (squashfs and overlay are in no format's early-boot list).
 *   The image itself is not changed for the live system.
 * - Installer mode (`kubedos.install=`): the same initrd writes the raw disk image, shipped as a
 *   squashfs holding disk.raw (sparse, compressed), to the first disk that is not the boot medium,
 *   then powers off.
 *
 * Everything is made once per build and shared between formats through `ctx.shared`.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { BuildFailedError } from '../errors';
import { COMMON_KERNEL_ARGS } from './boot';
import { sharedOnce, type BuildContext } from './context';
import { newcArchive, parentDirs, type CpioEntry } from './cpio';
import { diskLayout, layerIds } from './disk';
import { linkOrCopySparse } from './files';
import { renderPayload } from './payload';
import { clampMtimes } from './tree';
import { debugfsRequest } from './tools/debugfs';
import { mksquashfs } from './tools/mksquashfs';

/** Where the live files sit on boot media (ISO) and in the initramfs (PXE). */
export const LIVE_PATHS = {
  kernel: '/live/vmlinuz',
  initrd: '/live/initrd.img',
  root: '/live/root.squashfs',
  disk: '/install/disk.squashfs',
  /** PXE: the root squashfs arrives inside the initramfs, at this path. */
  initramfsRoot: '/kubedos/root.squashfs',
} as const;

/** Kernel modules the boot script loads (with their dependencies), bundled in the appended archive. */
const LIVE_MODULES = ['loop', 'squashfs', 'overlay', 'isofs', 'sr_mod'] as const;

export interface LiveBootArgs {
  /** ISO 9660 volume id of the boot medium; absent when the files are in the initramfs (PXE). */
  mediaLabel?: string;
  /** Path of the root squashfs on the medium, or in the initramfs. */
  root: string;
  /** Write the disk image to the first disk (`auto`) or the named device instead of booting live. */
  install?: 'auto' | `/dev/${string}`;
}

/** The kernel command line of a live boot (initramfs-tools with the kubedos boot script). */
export function liveKernelArgs(a: LiveBootArgs): string {
  return [
    'boot=kubedos',
    ...(a.mediaLabel ? [`kubedos.media=${a.mediaLabel}`] : []),
    `kubedos.root=${a.root}`,
    ...(a.install ? [`kubedos.install=${a.install}`, `kubedos.disk=${LIVE_PATHS.disk}`] : []),
    ...COMMON_KERNEL_ARGS,
  ].join(' ');
}

/** The boot script, sourced by initramfs-tools' /init as /scripts/kubedos (klibc sh). */
export function liveBootScript(modules: readonly { name: string; file: string }[]): string {
  return `# KubeDos live boot for initramfs-tools (boot=kubedos). Generated; see src/foundry/live.ts.
# The image's root filesystem is a read-only squashfs under a tmpfs overlay. Kernel parameters:
#   kubedos.media=LABEL    ISO 9660 volume holding the files (absent: they are in the initramfs)
#   kubedos.root=PATH      the root squashfs
#   kubedos.install=auto|/dev/NAME   instead, write the disk image to the first disk that is not
#                          the boot medium (or the named one), then power off
#   kubedos.disk=PATH      squashfs holding disk.raw and disk.size (on the medium)

kd_say() { echo "kubedos: $*"; }
kd_fail() { kd_say "FAILED: $*"; while true; do panic "kubedos: $*"; done; }

kd_param() {
	for kd_p in $(cat /proc/cmdline); do
		case "$kd_p" in "$1="*) echo "\${kd_p#*=}"; return 0 ;; esac
	done
	return 1
}

# NAME FILE: modprobe, else the bundled module (the stock initrd may not carry it)
kd_load() { modprobe -q "$1" 2>/dev/null || insmod "$2" 2>/dev/null || true; }

# LABEL: the device holding that volume, waiting up to 60 s for it to appear
kd_find() {
	kd_n=0
	while [ "$kd_n" -lt 60 ]; do
		kd_d=$(blkid -l -o device -t "LABEL=$1" 2>/dev/null) && [ -n "$kd_d" ] && { echo "$kd_d"; return 0; }
		sleep 1
		kd_n=$((kd_n + 1))
	done
	return 1
}

# FILE: attach it to a free loop device, print the device
kd_loop() { kd_l=$(losetup -f) && losetup "$kd_l" "$1" && echo "$kd_l"; }

# DEVICE: the whole disk it belongs to (sr0 -> sr0, sdb1 -> sdb)
kd_disk_of() {
	kd_b=\${1##*/}
	if [ -e "/sys/class/block/$kd_b/partition" ]; then kd_b=$(cd -P "/sys/class/block/$kd_b/.." && echo "\${PWD##*/}"); fi
	echo "$kd_b"
}

# BYTES: the first disk (by name) that is not the boot medium and holds at least BYTES
kd_target() {
	for kd_s in /sys/block/*; do
		kd_t=\${kd_s##*/}
		case "$kd_t" in loop*|ram*|sr*|zram*|dm-*|md*|fd*|nbd*) continue ;; esac
		[ "$kd_t" = "$kd_media_disk" ] && continue
		kd_sectors=$(cat "$kd_s/size")
		if [ $((kd_sectors * 512)) -lt "$1" ]; then kd_say "skipping /dev/$kd_t: smaller than the image"; continue; fi
		echo "/dev/$kd_t"
		return 0
	done
	return 1
}

kd_install() {
	mkdir -p /run/kubedos/disk
	kd_dl=$(kd_loop "$kd_media_dir$kd_disk") || kd_fail "cannot attach $kd_media_dir$kd_disk"
	mount -t squashfs -o ro "$kd_dl" /run/kubedos/disk || kd_fail "cannot mount $kd_disk"
	kd_size=$(cat /run/kubedos/disk/disk.size)
	if [ "$1" = auto ]; then
		kd_dev=$(kd_target "$kd_size") || kd_fail "no disk of at least $kd_size bytes besides the boot medium"
	else
		kd_dev=$1
	fi
	kd_say "installing the disk image ($kd_size bytes) to $kd_dev"
	dd if=/run/kubedos/disk/disk.raw of="$kd_dev" bs=4194304 || kd_fail "writing $kd_dev failed"
	sync
	kd_say "installed to $kd_dev; powering off"
	poweroff
	kd_fail "power off failed"
}

mountroot() {
${modules.map((m) => `\tkd_load ${m.name} ${m.file}`).join('\n')}
	kd_media=$(kd_param kubedos.media) || kd_media=
	kd_root=$(kd_param kubedos.root) || kd_root=${LIVE_PATHS.root}
	kd_disk=$(kd_param kubedos.disk) || kd_disk=${LIVE_PATHS.disk}
	kd_media_dir=
	kd_media_disk=
	mkdir -p /run/kubedos/media /run/kubedos/root /run/kubedos/rw
	wait_for_udev 10
	if [ -n "$kd_media" ]; then
		kd_say "looking for the boot medium $kd_media"
		kd_dev=$(kd_find "$kd_media") || kd_fail "boot medium $kd_media not found"
		kd_media_disk=$(kd_disk_of "$kd_dev")
		mount -t iso9660 -o ro "$kd_dev" /run/kubedos/media || kd_fail "cannot mount $kd_dev"
		kd_media_dir=/run/kubedos/media
	fi
	if kd_install_to=$(kd_param kubedos.install); then kd_install "$kd_install_to"; fi
	if [ ! -f "$kd_media_dir$kd_root" ]; then
		[ -n "$kd_media" ] && kd_fail "$kd_root is not on the boot medium $kd_media"
		kd_fail "$kd_root is not in the initramfs: pass the root archive as an initrd (with too little RAM the kernel cannot unpack it: see 'Initramfs unpacking failed' above)"
	fi
	kd_rl=$(kd_loop "$kd_media_dir$kd_root") || kd_fail "cannot attach $kd_media_dir$kd_root"
	mount -t squashfs -o ro "$kd_rl" /run/kubedos/root || kd_fail "cannot mount $kd_root"
	mount -t tmpfs -o mode=0755 tmpfs /run/kubedos/rw || kd_fail "cannot mount the overlay's tmpfs"
	mkdir -p /run/kubedos/rw/upper /run/kubedos/rw/work
	mount -t overlay -o lowerdir=/run/kubedos/root,upperdir=/run/kubedos/rw/upper,workdir=/run/kubedos/rw/work overlay "\${rootmnt}" ||
		kd_fail "cannot mount the overlay root"
	# The image's fstab names its disk's root filesystem; the live root is this overlay.
	echo "# live system: / is the image's squashfs under a tmpfs overlay (see /run/kubedos)" > "\${rootmnt}/etc/fstab"
	kd_say "live root: $kd_root (squashfs) under a tmpfs overlay"
}

mount_top() { :; }
mount_premount() { :; }
mount_bottom() { :; }
`;
}

async function liveDir(ctx: BuildContext): Promise<string> {
  const dir = path.join(ctx.workDir, 'live');
  await fs.mkdir(dir, { recursive: true });
  return dir;
}

/** `<disk>?offset=<root partition>`: the root filesystem as debugfs addresses it inside the disk. */
function rootFsOfDisk(ctx: BuildContext): string {
  const layout = diskLayout(ctx.plan.image.diskSizeBytes, ctx.inputDigest!);
  return `${ctx.rawDisk!}?offset=${layout.root.offset}`;
}

/** Resolve an image path inside `root` through the tree's own symlinks (never leaving it). */
export async function resolveInTree(root: string, imagePath: string): Promise<string | undefined> {
  const queue = imagePath.split('/').filter(Boolean);
  const name = queue.pop();
  let resolved: string[] = [];
  let hops = 0;
  while (queue.length > 0) {
    const part = queue.shift()!;
    if (part === '.') continue;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    const st = await fs.lstat(path.join(root, ...resolved, part)).catch(() => undefined);
    if (!st) return undefined;
    if (st.isSymbolicLink()) {
      if (++hops > 40) return undefined;
      const target = await fs.readlink(path.join(root, ...resolved, part));
      if (target.startsWith('/')) resolved = [];
      queue.unshift(...target.split('/').filter(Boolean));
    } else {
      resolved.push(part);
    }
  }
  return path.join(root, ...resolved, name ?? '');
}

/** Paths (relative to `root`) of every non-symlink entry with setuid, setgid or sticky bits. */
async function specialModePaths(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const e of await fs.readdir(path.join(root, rel), { withFileTypes: true })) {
      const r = path.posix.join(rel, e.name);
      if (e.isSymbolicLink()) continue;
      if (((await fs.lstat(path.join(root, r))).mode & 0o7000) !== 0) out.push(r);
      if (e.isDirectory()) await walk(r);
    }
  };
  await walk('');
  return out.sort();
}

/**
 * The image's root filesystem as a host tree: `rdump` of the disk's root partition, then the
 * setuid/setgid/sticky bits chown cleared put back from the filesystem, mtimes clamped to the
 * epoch (rdump stamps symlinks with the current time).
 */
async function imageTree(ctx: BuildContext): Promise<string> {
  const tree = path.join(await liveDir(ctx), 'tree');
  await fs.rm(tree, { recursive: true, force: true, maxRetries: 3 });
  await fs.mkdir(tree);
  const fsImage = rootFsOfDisk(ctx);
  const { stderr } = await debugfsRequest(fsImage, `rdump / "${tree}"`, { signal: ctx.options.signal });
  const problems = stderr.split('\n').filter((l) => l.trim() !== '' && !/^debugfs \d/.test(l));
  if (problems.length > 0) throw new BuildFailedError(`debugfs rdump of the root filesystem reported:\n${problems.slice(0, 20).join('\n')}`);

  const payload = renderPayload(ctx.plan, { inputDigest: ctx.inputDigest!, rootFsUuid: layerIds(ctx.layer!.digest).rootFsUuid });
  const candidates = new Set((await specialModePaths(ctx.layer!.rootfs)).map((p) => `/${p}`));
  for (const e of payload) if (e.kind !== 'symlink' && (e.mode & 0o7000) !== 0) candidates.add(e.path);
  for (const imagePath of [...candidates].sort()) {
    const { stdout } = await debugfsRequest(fsImage, `stat "${imagePath.replace(/"/g, '""')}"`, { signal: ctx.options.signal });
    const mode = /Mode:\s+0?([0-7]+)/.exec(stdout);
    const host = await resolveInTree(tree, imagePath);
    if (!mode || !host) continue; // not in the final filesystem (replaced by a symlink, or removed)
    const st = await fs.lstat(host).catch(() => undefined);
    if (st && !st.isSymbolicLink()) await fs.chmod(host, parseInt(mode[1]!, 8) & 0o7777);
  }
  await clampMtimes(tree, ctx.plan.sourceDateEpoch);
  return tree;
}

/** The root squashfs of the live system (made once per build). */
export function liveRootSquashfs(ctx: BuildContext): Promise<string> {
  return sharedOnce(ctx, 'live-root-squashfs', async () => {
    const tree = await imageTree(ctx);
    const out = path.join(await liveDir(ctx), 'root.squashfs');
    await fs.rm(out, { force: true });
    await mksquashfs({ sources: [tree], dest: out, epoch: ctx.plan.sourceDateEpoch }, { signal: ctx.options.signal });
    await fs.rm(tree, { recursive: true, force: true, maxRetries: 3 });
    await fs.utimes(out, ctx.plan.sourceDateEpoch, ctx.plan.sourceDateEpoch);
    return out;
  });
}

/** The installer's payload: a squashfs holding the raw disk (sparse) and its size (made once per build). */
export function installerDiskSquashfs(ctx: BuildContext): Promise<string> {
  return sharedOnce(ctx, 'live-disk-squashfs', async () => {
    const dir = path.join(await liveDir(ctx), 'install');
    await fs.rm(dir, { recursive: true, force: true });
    await fs.mkdir(dir);
    await linkOrCopySparse(ctx.rawDisk!, path.join(dir, 'disk.raw'));
    await fs.writeFile(path.join(dir, 'disk.size'), `${(await fs.stat(ctx.rawDisk!)).size}\n`);
    const out = path.join(await liveDir(ctx), 'disk.squashfs');
    await fs.rm(out, { force: true });
    // disk.raw is a hard link to the build's disk, which the sibling `raw` format may already have
    // published read-only (0444) or not (0644): its mode in the squashfs must not depend on which.
    await mksquashfs({ sources: [dir], dest: out, epoch: ctx.plan.sourceDateEpoch, allTime: true, pseudo: ['disk.raw m 444 0 0'] }, { signal: ctx.options.signal });
    await fs.rm(dir, { recursive: true, force: true });
    await fs.utimes(out, ctx.plan.sourceDateEpoch, ctx.plan.sourceDateEpoch);
    return out;
  });
}

/** Kernel release of the layer, from its kernel's file name (`vmlinuz-<release>`). */
export function kernelRelease(kernel: string): string {
  const m = /^vmlinuz-(.+)$/.exec(path.basename(kernel));
  if (!m) throw new BuildFailedError(`cannot tell the kernel release from ${kernel}`);
  return m[1]!;
}

/** A module's name from its file (`kernel/drivers/scsi/sr_mod.ko.xz` → `sr_mod`). */
function moduleNameOf(file: string): string {
  return path.posix.basename(file).replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');
}

/** `modules.dep` of a module tree: module name → its file and dependencies (names). */
export function parseModulesDep(text: string): Map<string, { file: string; deps: string[] }> {
  const nameOf = moduleNameOf;
  const out = new Map<string, { file: string; deps: string[] }>();
  for (const line of text.split('\n')) {
    const m = /^([^:\s]+):\s*(.*)$/.exec(line);
    if (m) out.set(nameOf(m[1]!), { file: m[1]!, deps: m[2]!.split(/\s+/).filter(Boolean).map(nameOf) });
  }
  return out;
}

/** The modules `names` need, dependencies first. */
export function moduleClosure(dep: ReadonlyMap<string, { file: string; deps: string[] }>, names: readonly string[]): { name: string; file: string }[] {
  const out: { name: string; file: string }[] = [];
  const seen = new Set<string>();
  const visit = (name: string) => {
    if (seen.has(name)) return;
    seen.add(name);
    const m = dep.get(name);
    if (!m) throw new BuildFailedError(`kernel module ${name} is not in the image's modules.dep`, 'the live system needs loop, squashfs, overlay, isofs and sr_mod (built in or as modules)');
    m.deps.forEach(visit);
    out.push({ name, file: m.file });
  };
  names.forEach(visit);
  return out;
}

/**
 * The archive appended to the layer's initrd: the boot script and the modules it loads. Modules
 * built into the kernel (modules.builtin) need no file.
 */
async function liveInitrdAddition(ctx: BuildContext): Promise<Buffer> {
  const layer = ctx.layer!;
  const release = kernelRelease(layer.kernel);
  const modulesDir = path.join(layer.rootfs, 'usr/lib/modules', release);
  const dep = parseModulesDep(await fs.readFile(path.join(modulesDir, 'modules.dep'), 'utf8'));
  const builtin = new Set((await fs.readFile(path.join(modulesDir, 'modules.builtin'), 'utf8')).split('\n').filter(Boolean).map(moduleNameOf));
  const modules = moduleClosure(dep, LIVE_MODULES.filter((m) => !builtin.has(m)));
  const files: CpioEntry[] = [];
  const loaded: { name: string; file: string }[] = [];
  for (const m of modules) {
    const name = `usr/lib/kubedos/modules/${path.posix.basename(m.file)}`;
    files.push({ kind: 'file', name, mode: 0o644, content: await fs.readFile(path.join(modulesDir, m.file)) });
    loaded.push({ name: m.name, file: `/${name}` });
  }
  files.push({ kind: 'file', name: 'scripts/kubedos', mode: 0o644, content: Buffer.from(liveBootScript(loaded)) });
  // Directories the stock initrd already has are not repeated (an entry would reset their modes).
  const entries = [...parentDirs(files.map((f) => f.name), new Set(['usr', 'usr/lib', 'scripts'])), ...files];
  return newcArchive(entries, ctx.plan.sourceDateEpoch);
}

/** The live initrd: the layer's initrd, padded to 4 bytes, then the kubedos archive (made once per build). */
export function liveInitrd(ctx: BuildContext): Promise<string> {
  return sharedOnce(ctx, 'live-initrd', async () => {
    const base = await fs.readFile(ctx.layer!.initrd);
    const addition = await liveInitrdAddition(ctx);
    const out = path.join(await liveDir(ctx), 'initrd.img');
    await fs.writeFile(out, Buffer.concat([base, Buffer.alloc((4 - (base.length % 4)) % 4), addition]));
    await fs.utimes(out, ctx.plan.sourceDateEpoch, ctx.plan.sourceDateEpoch);
    return out;
  });
}

/** The live kernel: the layer's own (a copy in the work directory, mtime at the epoch). */
export function liveKernel(ctx: BuildContext): Promise<string> {
  return sharedOnce(ctx, 'live-kernel', async () => {
    const out = path.join(await liveDir(ctx), 'vmlinuz');
    await fs.copyFile(ctx.layer!.kernel, out);
    await fs.utimes(out, ctx.plan.sourceDateEpoch, ctx.plan.sourceDateEpoch);
    return out;
  });
}
