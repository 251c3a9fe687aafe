/** The `qemu` target type: QEMU/KVM VMs on this machine or a host reached over SSH. */
import { z } from 'zod';
import { choice, describeTable } from '../../platform/fields';
import { hostSchema, machineShape } from '../../platform/target-fields';
import { show } from '../../platform/show';
import type { DeepReadonly } from '../../platform/types';
import { defineTarget, type DriverFactory } from '../descriptor';

/** OVMF as Debian's `ovmf` package installs it (on the host that runs the VMs). */
export const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
export const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd';

/** QEMU accelerators; `auto` picks KVM when /dev/kvm is usable and TCG otherwise. */
export const ACCELERATORS = [
  { name: 'auto', description: 'KVM when /dev/kvm is usable, TCG otherwise' },
  { name: 'kvm', description: 'hardware virtualisation; fails if /dev/kvm is missing' },
  { name: 'tcg', description: 'software emulation; slow but runs anywhere' },
] as const;
export type Accelerator = (typeof ACCELERATORS)[number]['name'];

/** A Linux network interface name (IFNAMSIZ 16 with the NUL): what `-netdev bridge,br=` is given. */
export const bridgeName = z.string().regex(/^[A-Za-z0-9_.-]{1,15}$/, {
  error: (iss) => `invalid bridge name ${show(iss.input)}: a Linux interface name of 1-15 letters, digits, '_', '.' or '-'`,
});

const schema = z
  .strictObject({
    type: z.literal('qemu'),
    host: hostSchema.default('local'),
    accel: choice(ACCELERATORS, 'accelerator').default('auto').describe(`QEMU accelerator. ${describeTable(ACCELERATORS)}`),
    ...machineShape(),
    network: z
      .union([z.literal('user'), z.strictObject({ bridge: bridgeName })], {
        error: (iss) => `expected "user" or {bridge: <name>}, got ${show(iss.input)}`,
      })
      .default('user')
      .describe('"user" (NAT, no root needed) or {bridge: br0}')
  })
  .describe('QEMU/KVM');

/** A parsed `qemu` target. */
export type QemuTargetSpec = DeepReadonly<z.output<typeof schema>>;

export const qemu = defineTarget({
  type: 'qemu',
  description: 'QEMU/KVM on this machine or a host over SSH (TCG when KVM is absent)',
  accepts: ['qcow2', 'raw'],
  pool: 'kvm',
  // mkfs.vfat + mcopy build each node's NoCloud seed on the worker.
  tools: ['qemu-system-x86_64', 'qemu-img', 'ssh-keygen', 'mkfs.vfat', 'mcopy'],
  files: [OVMF_CODE, OVMF_VARS],
  schema,
  load: async (): Promise<DriverFactory<QemuTargetSpec>> => {
    const { QemuDriver } = await import('./driver');
    return (name, spec, env) => new QemuDriver(name, spec, env);
  },
});
