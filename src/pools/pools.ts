/**
 * The worker pools, declared once: name, task queue, what each serves and needs. Pure data, safe to
 * import from workflows (task-queue names) as well as from workers and the CLI.
 */

import { ConfigError } from '../errors';

export const POOL_NAMES = ['control', 'build', 'kvm', 'vsphere', 'cloud'] as const;
export type PoolName = (typeof POOL_NAMES)[number];

export interface PoolDefinition {
  readonly name: PoolName;
  /** Temporal task queue the pool polls. */
  readonly taskQueue: string;
  readonly description: string;
  /**
   * Executables the pool itself needs, on PATH. The plug-ins it runs add theirs (see
   * requirements.ts): the build pool's formats, the other pools' target types.
   */
  readonly tools: readonly string[];
  /** Files the pool itself needs (firmware, boot stubs). */
  readonly files: readonly string[];
  /** Whether this pool executes workflows (only the control pool does). */
  readonly runsWorkflows: boolean;
  /** Whether its probe reports KVM or TCG (pools that run VMs on their own host). */
  readonly probesAccel?: boolean;
}

export const POOLS: Readonly<Record<PoolName, PoolDefinition>> = {
  control: {
    name: 'control',
    taskQueue: 'kubedos-control',
    description: 'workflows: orchestration only, no tools',
    tools: [],
    files: [],
    runsWorkflows: true,
  },
  build: {
    name: 'build',
    taskQueue: 'kubedos-build',
    description: 'the Foundry: rootfs, filesystems, disks, ISOs, conversions',
    // The pipeline's own steps (rootfs, ext4, ESP, GPT, UKI, initramfs); each format adds its tools.
    tools: ['mmdebstrap', 'mkfs.ext4', 'debugfs', 'mkfs.vfat', 'mcopy', 'sfdisk', 'objcopy', 'cpio', 'pigz', 'xz', 'zstd', 'umount'],
    files: ['/usr/lib/systemd/boot/efi/linuxx64.efi.stub'],
    runsWorkflows: false,
  },
  kvm: {
    name: 'kvm',
    taskQueue: 'kubedos-kvm',
    description: 'QEMU/KVM hosts, local or over SSH (TCG when /dev/kvm is unusable)',
    tools: [],
    files: [],
    runsWorkflows: false,
    probesAccel: true,
  },
  vsphere: {
    name: 'vsphere',
    taskQueue: 'kubedos-vsphere',
    description: 'ESXi/vSphere through govc',
    tools: [],
    files: [],
    runsWorkflows: false,
  },
  cloud: {
    name: 'cloud',
    taskQueue: 'kubedos-cloud',
    description: 'AWS/Azure/GCP and S3 uploads through the providers\' SDKs (in-process)',
    tools: [],
    files: [],
    runsWorkflows: false,
  },
};

/** Parse a comma-separated pool list, rejecting unknown names with the list of valid ones. */
export function parsePoolList(text: string): PoolName[] {
  const names = text.split(',').map((s) => s.trim()).filter(Boolean);
  const bad = names.filter((n) => !(POOL_NAMES as readonly string[]).includes(n));
  if (bad.length) {
    throw new ConfigError(
      `KUBEDOS_POOLS: unknown pool${bad.length > 1 ? 's' : ''} ${bad.map((b) => `"${b}"`).join(', ')}`,
      `expected a comma-separated list of ${POOL_NAMES.join(', ')}`,
    );
  }
  return names as PoolName[];
}
