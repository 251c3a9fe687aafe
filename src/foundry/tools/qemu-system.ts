/**
 * qemu-system-x86_64, the one module for it. Three machine shapes, argv only:
 * - `qemuMachineArgv`: a q35 test bench for images and boot media (CD-ROM, disks, network boot
 *   through QEMU's built-in iPXE, SeaBIOS or OVMF, serial console to a file and optionally a socket);
 * - `qemuMicrovmBootArgv`: `-M microvm`, the closest runnable relative of a Firecracker microVM;
 * - `qemuVmArgv`: a long-lived node VM (QMP, pid file, seed disk, forwarded ports or a bridge).
 * Under TCG when there is no KVM, as here.
 */
import { runTool, type RunResult } from '../../exec/run';
import type { ToolOptions } from './common';

export interface QemuDisk {
  file: string;
  /** `vpc`: a VHD (Azure's fixed VHD boots as it is). */
  format: 'raw' | 'qcow2' | 'vmdk' | 'vpc';
  /** Writes go to a temporary overlay. @default false */
  snapshot?: boolean;
  /** How the guest sees it: virtio-blk, or an NVMe controller (as EC2 Nitro exposes EBS). @default 'virtio' */
  bus?: 'virtio' | 'nvme';
}

export interface QemuMachineArgs {
  /** SeaBIOS, or OVMF code (read-only) with a private, writable copy of its variable store. */
  firmware: 'bios' | { ovmfCode: string; ovmfVars: string };
  /** ISO image attached as a CD-ROM (AHCI on q35). */
  cdrom?: string;
  /** virtio disks, in order (the first is /dev/vda). */
  disks?: readonly QemuDisk[];
  /**
   * A virtio NIC on user-mode networking; `tftpDir`/`bootfile` enable its TFTP server and DHCP boot
   * file; `network` is its address range (e.g. 169.254.0.0/16), `guestForwards` hand the guest's
   * connections to address:port (inside it) to a new `command` each, and `restrict` cuts it off
   * from the host and the internet (the forwards still work).
   */
  net?: { tftpDir?: string; bootfile?: string; network?: string; restrict?: boolean; guestForwards?: readonly { address: string; port: number; command: string }[] };
  /** SMBIOS fields (`-smbios` values, e.g. `type=1,product=Virtual Machine`): what the guest reads from /sys/class/dmi/id. */
  smbios?: readonly string[];
  /** SMBIOS system UUID. */
  uuid?: string;
  /** What the firmware tries first (the others follow in cdrom, disk, network order). */
  boot: 'cdrom' | 'disk' | 'network';
  /** Everything the guest writes to the serial port is appended here. */
  serialLog: string;
  /** Also serve the serial port on this Unix socket (server, no wait), to type into the console. */
  serialSocket?: string;
  /** @default 1024 */
  memoryMiB?: number;
  /** @default 2 */
  cpus?: number;
}

export function qemuMachineArgv(a: QemuMachineArgs): string[] {
  const order = [a.boot, ...(['cdrom', 'disk', 'network'] as const).filter((b) => b !== a.boot)];
  const bootindex = (kind: (typeof order)[number], n = 0) => order.indexOf(kind) * 10 + n + 1;
  const argv = [
    'qemu-system-x86_64', '-accel', 'tcg,thread=multi', '-cpu', 'max', '-machine', 'q35',
    '-smp', String(a.cpus ?? 2), '-m', String(a.memoryMiB ?? 1024),
    '-display', 'none', '-monitor', 'none', '-no-reboot', '-nodefaults',
  ];
  if (a.firmware !== 'bios') {
    argv.push(
      '-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${qemuOptValue(a.firmware.ovmfCode)}`,
      '-drive', `if=pflash,format=raw,unit=1,file=${qemuOptValue(a.firmware.ovmfVars)}`,
    );
  }
  if (a.cdrom) {
    argv.push('-drive', `if=none,id=cd0,media=cdrom,readonly=on,format=raw,file=${qemuOptValue(a.cdrom)}`, '-device', `ide-cd,drive=cd0,bus=ide.0,bootindex=${bootindex('cdrom')}`);
  }
  (a.disks ?? []).forEach((d, i) => {
    argv.push(
      '-drive', `if=none,id=hd${i},format=${d.format},file=${qemuOptValue(d.file)},discard=unmap,detect-zeroes=unmap${d.snapshot ? ',snapshot=on' : ''}`,
      '-device', d.bus === 'nvme' ? `nvme,drive=hd${i},serial=hd${i},bootindex=${bootindex('disk', i)}` : `virtio-blk-pci,drive=hd${i},bootindex=${bootindex('disk', i)}`,
    );
  });
  for (const s of a.smbios ?? []) argv.push('-smbios', s);
  if (a.uuid) argv.push('-uuid', a.uuid);
  if (a.net) {
    const opts = [`user,id=net0`, ...(a.net.tftpDir ? [`tftp=${qemuOptValue(a.net.tftpDir)}`] : []), ...(a.net.bootfile ? [`bootfile=${qemuOptValue(a.net.bootfile)}`] : [])];
    if (a.net.restrict) opts.push('restrict=on');
    if (a.net.network) opts.push(`net=${a.net.network}`);
    for (const f of a.net.guestForwards ?? []) opts.push(`guestfwd=tcp:${f.address}:${f.port}-cmd:${qemuOptValue(f.command)}`);
    argv.push('-netdev', opts.join(','), '-device', `virtio-net-pci,netdev=net0,bootindex=${bootindex('network')}`);
  }
  if (a.serialSocket) {
    argv.push('-chardev', `socket,id=ser0,path=${qemuOptValue(a.serialSocket)},server=on,wait=off,logfile=${qemuOptValue(a.serialLog)}`, '-serial', 'chardev:ser0');
  } else {
    argv.push('-chardev', `file,id=ser0,path=${qemuOptValue(a.serialLog)}`, '-serial', 'chardev:ser0');
  }
  return argv;
}

/** Resolves when QEMU exits (the guest powered off or rebooted: -no-reboot); abort `options.signal` to stop it. */
export function qemuMachine(a: QemuMachineArgs, options: ToolOptions = {}): Promise<RunResult> {
  return runTool(qemuMachineArgv(a), options);
}

/**
 * `-M microvm`: no PCI, virtio-mmio devices described in ACPI, direct boot of an ELF vmlinux
 * through its PVH entry, a 16550 serial console. Boot-tests Firecracker bundles without /dev/kvm.
 */
export interface MicrovmNic {
  id: string;
  /** The user-mode network, e.g. 169.254.0.0/16 (QEMU's default is 10.0.2.0/24). */
  net?: string;
  /** Guest connections to address:port (inside `net`) are handed to a new `command` each, on its stdin/stdout. */
  guestForwards?: readonly { address: string; port: number; command: string }[];
}

/** A microvm drive: a raw image, optionally read-only (shared by several VMs, as Firecracker's `is_read_only`). */
export interface MicrovmDrive {
  file: string;
  /** @default false */
  readOnly?: boolean;
}

export interface MicrovmBootArgs {
  /** Uncompressed ELF vmlinux with a PVH note. */
  kernel: string;
  initrd?: string;
  /** The complete kernel command line. */
  cmdline: string;
  /** Raw images attached as virtio-blk-device in order (the first is /dev/vda); a read-only one is opened read-only. */
  drives: readonly (string | MicrovmDrive)[];
  /** virtio-net-device NICs on restricted user-mode networking (no host access), in order. @default none */
  nics?: readonly MicrovmNic[];
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
    '-chardev', `file,id=ser0,path=${qemuOptValue(a.serialFile)}`, '-serial', 'chardev:ser0',
    '-kernel', a.kernel,
  ];
  if (a.initrd) argv.push('-initrd', a.initrd);
  argv.push('-append', a.cmdline);
  a.drives.forEach((drive, i) => {
    const { file, readOnly } = typeof drive === 'string' ? { file: drive, readOnly: false } : drive;
    argv.push('-drive', `id=drive${i},file=${qemuOptValue(file)},format=raw,if=none${readOnly ? ',readonly=on' : ''}${a.snapshot ? ',snapshot=on' : ''}`, '-device', `virtio-blk-device,drive=drive${i}`);
  });
  for (const nic of a.nics ?? []) {
    const opts = [`user,id=${nic.id},restrict=on`, ...(nic.net ? [`net=${nic.net}`] : [])];
    for (const f of nic.guestForwards ?? []) opts.push(`guestfwd=tcp:${f.address}:${f.port}-cmd:${qemuOptValue(f.command)}`);
    argv.push('-netdev', opts.join(','), '-device', `virtio-net-device,netdev=${nic.id}`);
  }
  return argv;
}

/** Resolves when QEMU exits; abort `options.signal` to stop it. */
export function qemuMicrovmBoot(a: MicrovmBootArgs, options: ToolOptions = {}): Promise<RunResult> {
  return runTool(qemuMicrovmBootArgv(a), options);
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
