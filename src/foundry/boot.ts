/**
 * UEFI boot without a bootloader: a unified kernel image (systemd-stub + os-release + command
 * line + kernel + initrd, assembled by objcopy) installed as the removable-media path
 * \EFI\BOOT\BOOTX64.EFI of a FAT32 ESP made with mkfs.vfat --invariant and populated by mtools.
 * binutils stamps the current time into the PE header: it is normalised (TimeDateStamp = epoch,
 * checksum recomputed).
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { BuildFailedError } from '../errors';
import type { BuildContext } from './context';
import { sha256Hex } from './plan';
import { mkfsVfat } from './tools/mkfs';
import { mcopy, mmd } from './tools/mtools';
import { objcopyAddSections } from './tools/objcopy';

/** The systemd EFI stub UKIs are built from. */
export const SYSTEMD_STUB = '/usr/lib/systemd/boot/efi/linuxx64.efi.stub';

/**
 * What every KubeDos kernel command line carries (disk, live, installer): the consoles, serial
 * last (it is /dev/console), and `no_timer_check`. That skips the early check that the IO-APIC
 * timer ticks during a short busy-wait, which the kernel already skips as a KVM or Hyper-V guest;
 * it still runs under emulation and on bare metal. Under QEMU's TCG on a loaded host the ticks
 * come late and the check panics ("IO-APIC + timer doesn't work!"): a PXE boot of the bare-metal
 * tests did, and most likely build.test's silent boot too.
 */
export const COMMON_KERNEL_ARGS: readonly string[] = ['no_timer_check', 'console=tty0', 'console=ttyS0,115200n8'];

/** Kernel command line of every image: root by filesystem UUID, then the common arguments. */
export function kernelCmdline(rootFsUuid: string): string {
  return [`root=UUID=${rootFsUuid}`, 'ro', 'rootwait', ...COMMON_KERNEL_ARGS].join(' ');
}

/** Set a PE image's COFF TimeDateStamp and recompute its optional-header CheckSum, in place. */
export function normalisePe(buf: Buffer, timestamp: number): void {
  const pe = buf.readUInt32LE(0x3c);
  if (buf.readUInt32BE(pe) !== 0x50450000) throw new BuildFailedError('UKI is not a PE image');
  buf.writeUInt32LE(timestamp >>> 0, pe + 8);
  const checksumAt = pe + 24 + 64;
  buf.writeUInt32LE(0, checksumAt);
  let sum = 0;
  const words = Math.floor(buf.length / 2);
  for (let i = 0; i < words; i++) {
    sum += buf.readUInt16LE(i * 2);
    sum = (sum & 0xffff) + (sum >>> 16);
  }
  if (buf.length % 2) {
    sum += buf[buf.length - 1]!;
    sum = (sum & 0xffff) + (sum >>> 16);
  }
  sum = (sum & 0xffff) + (sum >>> 16);
  buf.writeUInt32LE((sum + buf.length) >>> 0, checksumAt);
}

/** Step: assemble the UKI from the layer's kernel and initrd. */
export async function buildUki(ctx: BuildContext, rootFsUuid: string): Promise<string> {
  const layer = ctx.layer!;
  const dir = path.join(ctx.workDir, 'uki');
  await fs.mkdir(dir, { recursive: true });
  const osrel = path.join(dir, 'os-release');
  const osRelease = await fs.readFile(path.join(layer.rootfs, 'usr/lib/os-release'));
  await fs.writeFile(osrel, osRelease);
  const cmdline = path.join(dir, 'cmdline');
  await fs.writeFile(cmdline, `${kernelCmdline(rootFsUuid)}\0`);
  const kernelSize = (await fs.stat(layer.kernel)).size;
  const linuxVma = 0x2000000;
  const initrdVma = linuxVma + Math.ceil((kernelSize + 0x100000) / 0x100000) * 0x100000;
  const out = path.join(dir, 'linux.efi');
  await objcopyAddSections(
    SYSTEMD_STUB,
    out,
    [
      { name: '.osrel', file: osrel, vma: 0x20000 },
      { name: '.cmdline', file: cmdline, vma: 0x30000 },
      { name: '.linux', file: layer.kernel, vma: linuxVma },
      { name: '.initrd', file: layer.initrd, vma: initrdVma },
    ],
    { signal: ctx.options.signal },
  );
  const buf = await fs.readFile(out);
  normalisePe(buf, ctx.plan.sourceDateEpoch);
  await fs.writeFile(out, buf);
  await fs.utimes(out, ctx.plan.sourceDateEpoch, ctx.plan.sourceDateEpoch);
  ctx.log.info({ size: buf.length, sha256: sha256Hex(buf).slice(0, 16) }, 'unified kernel image');
  return out;
}

/** Step: the ESP image holding the UKI as the removable-media boot path. */
export async function buildEsp(ctx: BuildContext, uki: string, sizeKiB: number, volumeId: string): Promise<string> {
  const esp = path.join(ctx.workDir, 'esp.vfat');
  await fs.rm(esp, { force: true });
  const run = { signal: ctx.options.signal, sourceDateEpoch: ctx.plan.sourceDateEpoch };
  await mkfsVfat({ image: esp, sizeKiB, volumeId, label: 'ESP' }, run);
  await mmd(esp, '/EFI', run);
  await mmd(esp, '/EFI/BOOT', run);
  await mcopy(esp, uki, '/EFI/BOOT/BOOTX64.EFI', run);
  return esp;
}
