/**
 * What the Firecracker driver names on a host, derived from the target name and the node id (pure
 * functions, so every worker derives the same names and a retried step finds what an earlier
 * attempt made): the jail id, the tap device, the guest MAC, the NAT /30 of a node, the jailer's
 * cgroup arguments and the cgroup directories it creates.
 */
import { createHash } from 'node:crypto';
import { MAX_JAIL_ID } from './index';

function digest(...parts: string[]): string {
  return createHash('sha256').update(parts.join('\0')).digest('hex');
}

/**
 * The jail id (`--id`): alphanumerics and hyphens, at most 32 characters (the jailer allows 64;
 * the API socket path inside the jail must stay within a unix socket's 107 bytes). The readable
 * part is the node id's start; the hash makes it unique per target and node.
 */
export function jailId(target: string, nodeId: string): string {
  const readable = nodeId.replace(/[^A-Za-z0-9-]/g, '-').slice(0, MAX_JAIL_ID - 13).replace(/-+$/, '');
  return `${readable || 'node'}-${digest('jail', target, nodeId).slice(0, 12)}`;
}

/** The tap device of a node: `kf` + 13 hex digits (15 characters, the longest interface name). */
export function tapName(target: string, nodeId: string): string {
  return `kf${digest('tap', target, nodeId).slice(0, 13)}`;
}

/** A stable, locally administered unicast MAC for a node's eth0. */
export function guestMac(target: string, nodeId: string): string {
  const h = digest('mac', target, nodeId);
  return ['06', h.slice(0, 2), h.slice(2, 4), h.slice(4, 6), h.slice(6, 8), h.slice(8, 10)].join(':');
}

function ipv4(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

function parseIpv4(text: string): number {
  return text.split('.').reduce((a, o) => a * 256 + Number(o), 0);
}

/** The /30 of NAT block `index` of a subnet: the host end (tap), the guest end, the netmask. */
export function natAddresses(subnet: string, index: number): { host: string; guest: string; prefix: 30; netmask: string } {
  const [network] = subnet.split('/');
  const base = parseIpv4(network!) + index * 4;
  return { host: ipv4(base + 1), guest: ipv4(base + 2), prefix: 30, netmask: '255.255.255.252' };
}

/**
 * The guest's static address as a kernel argument (`ip=<client>::<gateway>:<netmask>::<iface>:off`,
 * the form systemd-network-generator reads in the image).
 */
export function natKernelArg(subnet: string, index: number, iface = 'eth0'): string {
  const a = natAddresses(subnet, index);
  return `ip=${a.guest}::${a.host}:${a.netmask}::${iface}:off`;
}

/** nftables table of a target's NAT rules on a host (letters, digits, `_`). */
export function natTable(target: string): string {
  return `kubedos_${digest('nat', target).slice(0, 12)}`;
}

export interface CgroupLimits {
  version: 1 | 2;
  cpus: number;
  memoryBytes: number;
}

/** The VMM's memory beyond the guest's: device buffers, page tables, the API server. */
export const VMM_MEMORY_OVERHEAD = 128 * 2 ** 20;
const CPU_PERIOD_US = 100_000;

/** `--cgroup` values for the jailer: CPU time of `cpus` CPUs, the guest's memory plus the VMM's overhead. */
export function cgroupArgs(limits: CgroupLimits): string[] {
  const quota = String(limits.cpus * CPU_PERIOD_US);
  const memory = String(limits.memoryBytes + VMM_MEMORY_OVERHEAD);
  return limits.version === 2
    ? [`cpu.max=${quota} ${CPU_PERIOD_US}`, `memory.max=${memory}`]
    : [`cpu.cfs_period_us=${CPU_PERIOD_US}`, `cpu.cfs_quota_us=${quota}`, `memory.limit_in_bytes=${memory}`];
}

/** The cgroup directories the jailer makes for these arguments (its parent cgroup is the exec file's name). */
export function cgroupDirs(root: string, version: 1 | 2, execName: string, jail: string): string[] {
  return version === 2 ? [`${root}/${execName}/${jail}`] : ['cpu', 'memory'].map((c) => `${root}/${c}/${execName}/${jail}`);
}
