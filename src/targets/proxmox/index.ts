/** The `proxmox` target type: VMs on a Proxmox VE node, driven over SSH with qm/pvesm. */
import { z } from 'zod';
import { machineShape, sshConnectionSchema } from '../../platform/target-fields';
import { show } from '../../platform/show';
import type { DeepReadonly } from '../../platform/types';
import { defineTarget, type DriverFactory } from '../descriptor';

// Proxmox's own grammars (pve-common's JSONSchema formats), so a name is refused at `validate`
// rather than quoted into a command line.
/** `pve-node`: a host name label. */
const nodeName = z.string().regex(/^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$/, {
  error: (iss) => `invalid Proxmox node name ${show(iss.input)}: Proxmox names nodes by host name (letters, digits and '-', not starting or ending with '-'), e.g. pve1`,
});
/** `pve-storage-id`. */
const storageId = z.string().regex(/^[a-z][a-z0-9_.-]*[a-z0-9]$/, {
  error: (iss) => `invalid Proxmox storage id ${show(iss.input)}: a storage id is lowercase letters, digits, '-', '_' and '.', starting with a letter, e.g. local-lvm`,
});
/** A Linux bridge (`pve-bridge-id`: an interface name of at most 15 characters). */
const bridgeId = z.string().regex(/^[a-zA-Z][a-zA-Z0-9_.-]{0,14}$/, {
  error: (iss) => `invalid Proxmox bridge ${show(iss.input)}: a Linux bridge name of 1-15 letters, digits, '_', '.' or '-' starting with a letter, e.g. vmbr0`,
});

const vmid = z.int().min(100).max(999_999_999);

const schema = z
  .strictObject({
    type: z.literal('proxmox'),
    ssh: sshConnectionSchema,
    node: nodeName.describe('Proxmox node name, e.g. pve1'),
    storage: storageId.default('local-lvm').describe('Storage pool for disks'),
    bridge: bridgeId.default('vmbr0').describe('Network bridge for VMs'),
    vmidRange: z
      .tuple([vmid, vmid])
      .superRefine(([low, high], ctx) => {
        if (low > high) ctx.addIssue({ code: 'custom', message: `vmidRange [${low}, ${high}] is reversed; write [low, high]` });
      })
      .prefault([9000, 9999])
      .describe('VM ids KubeDos may use, inclusive; VMs outside it are never touched'),
    ...machineShape(),
  })
  .describe('Proxmox VE');

/** A parsed `proxmox` target. */
export type ProxmoxTargetSpec = DeepReadonly<z.output<typeof schema>>;

export const proxmox = defineTarget({
  type: 'proxmox',
  description: 'Proxmox VE node over SSH (qm importdisk, cloud-init snippets)',
  accepts: ['qcow2'],
  pool: 'kvm',
  tools: [],
  schema,
  slots: (raw) => {
    const [low, high] = Array.isArray(raw.vmidRange) ? raw.vmidRange : [9000, 9999];
    if (typeof low !== 'number' || typeof high !== 'number' || low > high) return undefined;
    return { count: high - low + 1, field: 'vmidRange', what: `vmidRange [${low}, ${high}] holds ${high - low + 1} VMs` };
  },
  load: async (): Promise<DriverFactory<ProxmoxTargetSpec>> => {
    const { ProxmoxDriver } = await import('./driver');
    return (name, spec, env) => new ProxmoxDriver(name, spec, env);
  },
});
