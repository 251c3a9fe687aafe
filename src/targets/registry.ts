/**
 * The target types this build deploys to: one line per substrate (its descriptor, see
 * ./descriptor.ts), alphabetical. A new substrate is a folder beside this file and a line here;
 * the spec, help, pool routing, worker wiring and doctor follow from it.
 */
export { aws } from './aws';
export { azure } from './azure';
export { baremetal } from './baremetal';
export { firecracker } from './firecracker';
export { gcp } from './gcp';
export { hollow } from './hollow';
export { proxmox } from './proxmox';
export { qemu } from './qemu';
export { vsphere } from './vsphere';
