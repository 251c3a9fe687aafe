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

/** A value inside a QEMU `-opt key=value,…` list: commas are doubled, so any path is safe. */
export function qemuOptValue(value: string): string {
  return value.replace(/,/g, ',,');
}

/** A port of the host forwarded to the guest (user-mode networking). */
export interface HostForward {
  /** Host address to listen on: 127.0.0.1 for this machine only, '' for every address. */
  bind: string;
  hostPort: number;
  guestPort: number;
}

export type QemuVmNetwork =
  | { type: 'user'; forwards: readonly HostForward[] }
  /** A tap on an existing bridge through qemu-bridge-helper (allowed in /etc/qemu/bridge.conf). */
  | { type: 'bridge'; bridge: string; mac: string };

export interface QemuVmArgs {
  /** Guest name (shown by QMP `query-name` and in `ps`). */
  name: string;
  accel: 'kvm' | 'tcg';
  cpus: number;
  memoryMiB: number;
  ovmfCode: string;
  /** The VM's own writable copy of the variable store. */
  ovmfVars: string;
  /** The node's qcow2 (a linked clone). */
  disk: string;
  /** Read-only metadata disk (e.g. a NoCloud cidata seed), qcow2. */
  seed?: string;
  /** SMBIOS system UUID; systemd takes the machine-id from it when /etc/machine-id is empty. */
  uuid?: string;
  network: QemuVmNetwork;
  /** Serial console log. */
  serialFile: string;
  /** QMP control socket (unix, server). */
  qmpSocket: string;
  pidFile: string;
  /** Fork into the background once the VM runs; the command exits 0 then (or non-zero on a startup error). */
  daemonize: boolean;
}

/**
 * A long-lived VM: OVMF, virtio disk (+ seed), virtio-net, serial console to a file, a QMP
 * socket, a pid file, no default devices. The same argv runs locally or on a remote host.
 */
export function qemuVmArgv(a: QemuVmArgs): string[] {
  const argv = [
    'qemu-system-x86_64', '-name', `guest=${qemuOptValue(a.name)}`,
    '-machine', 'q35', '-accel', a.accel === 'kvm' ? 'kvm' : 'tcg,thread=multi', '-cpu', a.accel === 'kvm' ? 'host' : 'max',
    '-smp', String(a.cpus), '-m', String(a.memoryMiB),
    '-nodefaults', '-no-user-config', '-display', 'none',
    '-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${qemuOptValue(a.ovmfCode)}`,
    '-drive', `if=pflash,format=raw,unit=1,file=${qemuOptValue(a.ovmfVars)}`,
    '-drive', `if=virtio,format=qcow2,file=${qemuOptValue(a.disk)}`,
  ];
  if (a.seed) argv.push('-drive', `if=virtio,format=qcow2,readonly=on,file=${qemuOptValue(a.seed)}`);
  if (a.uuid) argv.push('-uuid', a.uuid);
  if (a.network.type === 'user') {
    const fwd = a.network.forwards.map((f) => `,hostfwd=tcp:${f.bind}:${f.hostPort}-:${f.guestPort}`).join('');
    argv.push('-netdev', `user,id=net0${fwd}`, '-device', 'virtio-net-pci,netdev=net0');
  } else {
    argv.push('-netdev', `bridge,id=net0,br=${qemuOptValue(a.network.bridge)}`, '-device', `virtio-net-pci,netdev=net0,mac=${a.network.mac}`);
  }
  argv.push(
    '-chardev', `file,id=console,path=${qemuOptValue(a.serialFile)}`, '-serial', 'chardev:console',
    '-chardev', `socket,id=qmp,path=${qemuOptValue(a.qmpSocket)},server=on,wait=off`, '-mon', 'chardev=qmp,mode=control',
    '-pidfile', a.pidFile,
  );
  if (a.daemonize) argv.push('-daemonize');
  return argv;
}
