/**
 * The image's overlay root: how many microVMs share one read-only root filesystem on a host, each
 * with a small writable disk of its own (the Firecracker target attaches the bundle's rootfs
 * read-only as /dev/vda and a per-node sparse ext4 as /dev/vdb). It is Firecracker's documented
 * pattern (docs/overlay-filesystem.md: an `init=` script that mounts an overlayfs before the real
 * init) applied to the image's own root:
 *
 *   boot_args … init=/usr/lib/kubedos/overlay-init kubedos.overlay=vdb
 *
 * The initramfs mounts the root read-only (Firecracker appends `ro` for a read-only root drive),
 * then runs this script as PID 1. It mounts the node's disk under /run, mounts an overlayfs on
 * /mnt whose lower layer is the read-only root and whose upper layer is on that disk, moves /dev,
 * /proc, /sys and /run into it, comments out the root line of the merged /etc/fstab (the root is
 * now the overlay; systemd must not remount or fsck it), pivots into it and execs /sbin/init.
 * Nothing of the image is copied: a node's disk holds only what that node wrote.
 *
 * Without `kubedos.overlay=` it execs /sbin/init at once, so the argument alone decides. The
 * node's disk is mounted with `noinit_itable`: ext4 would otherwise zero its inode tables in the
 * background and allocate the whole sparse file on the host. Any failure ends PID 1, which panics
 * the kernel (panic=1: the microVM exits) with the reason on the console.
 */

/** Where the script lives in the image (a payload file, see payload.ts). */
export const OVERLAY_INIT_PATH = '/usr/lib/kubedos/overlay-init';

/** Kernel arguments that turn the overlay root on, with the node's disk as a /dev name (`vdb`). */
export function overlayKernelArgs(disk: string): string {
  if (!/^[a-z][a-z0-9]{0,15}$/.test(disk)) throw new TypeError(`invalid overlay disk name ${JSON.stringify(disk)}`);
  return `init=${OVERLAY_INIT_PATH} kubedos.overlay=${disk}`;
}

export const OVERLAY_INIT = `#!/bin/sh
# KubeDos overlay root (PID 1 before systemd, see src/foundry/overlay-init.ts): the read-only image
# root as the lower layer, the node's own disk (kubedos.overlay=<disk>) as the upper one.
set -eu
PATH=/usr/sbin:/usr/bin:/sbin:/bin
say() { echo "kubedos: overlay: $*"; }

disk=""
for arg in $(cat /proc/cmdline); do
  case $arg in kubedos.overlay=*) disk=\${arg#kubedos.overlay=} ;; esac
done
if [ -z "$disk" ]; then exec /sbin/init "$@"; fi
case $disk in *[!a-z0-9]*) say "error: kubedos.overlay=$disk is not a disk name"; exit 1 ;; esac

dev=/dev/$disk
i=0
while [ ! -b "$dev" ] && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if [ ! -b "$dev" ]; then say "error: $dev does not exist"; exit 1; fi

layer=/run/kubedos-overlay
mkdir -p "$layer"
mount -n -t ext4 -o noatime,noinit_itable "$dev" "$layer"
mkdir -p "$layer/upper" "$layer/work"
mount -n -t overlay -o "lowerdir=/,upperdir=$layer/upper,workdir=$layer/work" kubedos-root /mnt
for m in dev proc sys run; do mount -n --move "/$m" "/mnt/$m"; done
if [ -f /mnt/etc/fstab ]; then
  awk '$1 !~ /^#/ && $2 == "/" { print "# kubedos overlay-init: / is an overlay of the read-only image: " $0; next } { print }' /mnt/etc/fstab > /mnt/etc/fstab.kubedos
  mv /mnt/etc/fstab.kubedos /mnt/etc/fstab
fi
say "root is an overlay of the image with $dev as its writable layer"
cd /mnt
pivot_root . mnt
umount -n -l /mnt 2>/dev/null || true
exec chroot . /sbin/init "$@"
`;
