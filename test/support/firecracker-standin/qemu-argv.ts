/**
 * Boot helper of the Firecracker STAND-IN (boot.go): prints, as a JSON array, the QEMU argv that
 * runs a microVM configured through the stand-in's API, so that the project's one QEMU argv
 * builder (qemuMicrovmBootArgv) and the command line Firecracker gives its guest
 * (firecrackerKernelCmdline: boot_args, then root=/dev/vda ro|rw for the root drive) are used
 * here exactly as in the bundle's own boot test (test/e2e/format-firecracker.test.ts).
 *
 *   node -r ts-node/register/transpile-only qemu-argv.ts VM.json
 *
 * VM.json: the API's machine-config, boot-source, drives, network-interfaces and mmds-config,
 * with host paths already resolved inside the jail, plus serialFile, mmdsFile and mmdsToken.
 * Differences from Firecracker, all forced by running without KVM: TCG needs the TSC frequency
 * on the command line (tsc_early_khz=, see format-firecracker.test.ts); the MMDS interface is a
 * QEMU user-mode NIC whose 169.254.169.254:80 is forwarded to the MMDS stand-in
 * (../mmds-standin.cjs) instead of a tap intercepted by Firecracker's device model; other
 * interfaces are restricted user-mode NICs (their taps are opened by the stand-in, not used).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { firecrackerKernelCmdline, type FirecrackerConfig } from '../../../src/foundry/formats/firecracker';
import { qemuMicrovmBootArgv, type MicrovmNic } from '../../../src/foundry/tools/qemu-system';

interface VmDescription {
  'boot-source': { kernel_image_path: string; initrd_path?: string; boot_args?: string };
  drives: { drive_id: string; path_on_host: string; is_root_device: boolean; is_read_only: boolean }[];
  'machine-config': { vcpu_count: number; mem_size_mib: number };
  'network-interfaces': { iface_id: string; host_dev_name: string; guest_mac?: string }[];
  'mmds-config'?: { version: string; network_interfaces: string[]; ipv4_address: string };
  serialFile: string;
  mmdsFile: string;
  mmdsToken: string;
}

/** The host's TSC frequency, which TCG's TSC follows (the guest cannot calibrate without it). */
function tcgTimingHint(): string {
  const mhz = /cpu MHz\s*:\s*([\d.]+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1];
  return `tsc_early_khz=${Math.round(Number(mhz ?? 2000) * 1000)}`;
}

export function microvmArgv(vm: VmDescription): string[] {
  const boot = vm['boot-source'];
  // Firecracker attaches the root drive first (/dev/vda), then the others in the order they were put.
  const drives = [...vm.drives.filter((d) => d.is_root_device), ...vm.drives.filter((d) => !d.is_root_device)];
  const config = {
    'boot-source': { kernel_image_path: boot.kernel_image_path, initrd_path: boot.initrd_path ?? '', boot_args: boot.boot_args ?? '' },
    drives,
  } as Pick<FirecrackerConfig, 'boot-source' | 'drives'> as FirecrackerConfig;
  const mmds = vm['mmds-config'];
  const mmdsCommand = `${process.execPath} ${path.join(__dirname, '..', 'mmds-standin.cjs')} ${vm.mmdsFile} ${vm.mmdsToken}`;
  const nics: MicrovmNic[] = vm['network-interfaces'].map((n) =>
    mmds?.network_interfaces.includes(n.iface_id)
      ? { id: n.iface_id, net: '169.254.0.0/16', guestForwards: [{ address: mmds.ipv4_address, port: 80, command: mmdsCommand }] }
      : { id: n.iface_id },
  );
  return qemuMicrovmBootArgv({
    kernel: boot.kernel_image_path,
    initrd: boot.initrd_path,
    cmdline: `${firecrackerKernelCmdline(config)} ${tcgTimingHint()}`,
    drives: drives.map((d) => ({ file: d.path_on_host, readOnly: d.is_read_only })),
    nics,
    cpus: vm['machine-config'].vcpu_count,
    memoryMiB: vm['machine-config'].mem_size_mib,
    serialFile: vm.serialFile,
  });
}

if (require.main === module) {
  const vm = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as VmDescription;
  process.stdout.write(`${JSON.stringify(microvmArgv(vm))}\n`);
}
