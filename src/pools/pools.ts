/**
 * The worker pools, declared once: name, task queue, what each serves and needs. Pure data, safe to
 * import from workflows (task-queue names) as well as from workers and the CLI.
 */

import { ConfigError } from '../errors';
import type { TargetType } from '../platform/catalog';

export const POOL_NAMES = ['control', 'build', 'kvm', 'vsphere', 'cloud'] as const;
export type PoolName = (typeof POOL_NAMES)[number];

export interface PoolDefinition {
  readonly name: PoolName;
  /** Temporal task queue the pool polls. */
  readonly taskQueue: string;
  readonly description: string;
  /** Executables that must be on PATH for the pool to serve its queue. */
  readonly tools: readonly string[];
  /** Files that must exist (firmware, boot stubs). */
  readonly files: readonly string[];
  /** Whether this pool executes workflows (only the control pool does). */
  readonly runsWorkflows: boolean;
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
    tools: [
      'mmdebstrap', 'mkfs.ext4', 'debugfs', 'mkfs.vfat', 'mcopy', 'sfdisk', 'qemu-img',
      'xorriso', 'mksquashfs', 'objcopy', 'cpio', 'gzip', 'xz', 'zstd',
    ],
    files: ['/usr/lib/systemd/boot/efi/linuxx64.efi.stub'],
    runsWorkflows: false,
  },
  kvm: {
    name: 'kvm',
    taskQueue: 'kubedos-kvm',
    description: 'QEMU/KVM hosts, local or over SSH (TCG when /dev/kvm is unusable)',
    // mkfs.vfat + mcopy build each node's NoCloud seed on the worker.
    tools: ['qemu-system-x86_64', 'qemu-img', 'ssh-keygen', 'mkfs.vfat', 'mcopy'],
    files: ['/usr/share/OVMF/OVMF_CODE_4M.fd', '/usr/share/OVMF/OVMF_VARS_4M.fd'],
    runsWorkflows: false,
  },
  vsphere: {
    name: 'vsphere',
    taskQueue: 'kubedos-vsphere',
    description: 'ESXi/vSphere through govc',
    tools: ['govc'],
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

/**
 * Which pool runs a target type's deploy activities: where its tools and network reach are.
 * Hollow nodes are local processes of the control host, so the control pool runs them.
 */
export const TARGET_POOL: Readonly<Record<TargetType, PoolName>> = {
  qemu: 'kvm',
  firecracker: 'kvm',
  proxmox: 'kvm',
  baremetal: 'kvm',
  vsphere: 'vsphere',
  aws: 'cloud',
  azure: 'cloud',
  gcp: 'cloud',
  hollow: 'control',
};
