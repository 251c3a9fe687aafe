/**
 * qemu-system-x86_64 -M microvm: the closest runnable relative of a Firecracker microVM (no PCI,
 * virtio-mmio devices described in ACPI, direct boot of an ELF vmlinux through its PVH entry, a
 * 16550 serial console). Used to boot-test Firecracker bundles where /dev/kvm is absent (TCG).
 * Builds argv only.
 */
import { runTool, type RunResult } from '../../exec/run';
import type { ToolOptions } from './common';

export interface MicrovmBootArgs {
  /** Uncompressed ELF vmlinux with a PVH note. */
  kernel: string;
  initrd?: string;
  /** The complete kernel command line. */
  cmdline: string;
  /** Raw images attached as virtio-blk-device in order (the first is /dev/vda). */
  drives: readonly string[];
  /** Ids of user-mode (no host access) virtio-net-device NICs, in order. @default none */
  nics?: readonly string[];
  /** Serial console (ttyS0) is written to this file. */
  serialFile: string;
  /** @default 1 */
  cpus?: number;
  /** @default 512 */
  memoryMiB?: number;
  /** Boot without writing to the drives (changes go to temporary overlays). @default false */
  snapshot?: boolean;
}

export function qemuMicrovmBootArgv(a: MicrovmBootArgs): string[] {
  // auto-kernel-cmdline=off: no virtio_mmio.device= is appended, so the guest finds its devices
  // through ACPI alone (as under Firecracker >= 1.8 with a kernel lacking VIRTIO_MMIO_CMDLINE_DEVICES).
  const argv = [
    'qemu-system-x86_64', '-M', 'microvm,acpi=on,pcie=off,auto-kernel-cmdline=off',
    '-accel', 'tcg,thread=multi', '-cpu', 'max', '-smp', String(a.cpus ?? 1), '-m', String(a.memoryMiB ?? 512),
    '-nodefaults', '-no-user-config', '-display', 'none', '-monitor', 'none', '-no-reboot',
    '-serial', `file:${a.serialFile}`,
    '-kernel', a.kernel,
  ];
  if (a.initrd) argv.push('-initrd', a.initrd);
  argv.push('-append', a.cmdline);
  a.drives.forEach((file, i) => {
    argv.push('-drive', `id=drive${i},file=${file},format=raw,if=none${a.snapshot ? ',snapshot=on' : ''}`, '-device', `virtio-blk-device,drive=drive${i}`);
  });
  for (const id of a.nics ?? []) argv.push('-netdev', `user,id=${id},restrict=on`, '-device', `virtio-net-device,netdev=${id}`);
  return argv;
}

/** Resolves when QEMU exits; abort `options.signal` to stop it. */
export function qemuMicrovmBoot(a: MicrovmBootArgs, options: ToolOptions = {}): Promise<RunResult> {
  return runTool(qemuMicrovmBootArgv(a), options);
}
