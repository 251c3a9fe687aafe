/**
 * Entry point of the `kvm` worker pool (see src/pools/pools.ts): the deploy activities of every
 * target type whose descriptor routes it here (QEMU/KVM and Proxmox today), wired by run-pool.
 */
import { main } from './run-pool';

main('kvm');
