/** qemu-system-x86_64: boots an image under TCG (no KVM here) with OVMF. Builds argv only. */
import { runTool, type RunResult } from '../../exec/run';
import type { ToolOptions } from './common';

export interface QemuBootArgs {
  disk: string;
  diskFormat: 'raw' | 'qcow2';
  /** OVMF code (read-only) and a private, writable copy of the variable store. */
  ovmfCode: string;
  ovmfVars: string;
  /** Serial console is written to this file. */
  serialFile: string;
  /** @default 1024 */
  memoryMiB?: number;
  /** @default 2 */
  cpus?: number;
  /** Boot without writing to the disk (changes go to a temporary overlay). @default false */
  snapshot?: boolean;
}

export function qemuBootArgv(a: QemuBootArgs): string[] {
  return [
    'qemu-system-x86_64', '-accel', 'tcg,thread=multi', '-cpu', 'max', '-machine', 'q35',
    '-smp', String(a.cpus ?? 2), '-m', String(a.memoryMiB ?? 1024),
    '-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${a.ovmfCode}`,
    '-drive', `if=pflash,format=raw,unit=1,file=${a.ovmfVars}`,
    '-drive', `if=virtio,format=${a.diskFormat},file=${a.disk}${a.snapshot ? ',snapshot=on' : ''}`,
    '-nic', 'none', '-display', 'none', '-monitor', 'none', '-no-reboot',
    '-serial', `file:${a.serialFile}`,
  ];
}

/** Resolves when QEMU exits; abort `options.signal` to stop it (only this child is killed). */
export function qemuBoot(a: QemuBootArgs, options: ToolOptions = {}): Promise<RunResult> {
  return runTool(qemuBootArgv(a), options);
}
