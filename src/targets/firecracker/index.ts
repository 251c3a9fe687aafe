/**
 * The `firecracker` target type: microVMs on one or more Firecracker hosts (this machine or SSH
 * hosts), started through the jailer and configured through Firecracker's API. Names that reach
 * host command lines (paths, interface names, the subnet) are held to their grammar here, so a bad
 * value is refused at `validate` rather than quoted into a command.
 */
import path from 'node:path';
import { z } from 'zod';
import { objectRule, size } from '../../platform/fields';
import { show } from '../../platform/show';
import { hostSchema, machineShape } from '../../platform/target-fields';
import type { DeepReadonly } from '../../platform/types';
import { defineTarget, type DriverFactory } from '../descriptor';

const MiB = 2 ** 20;

/** An absolute path on the host of plain segments (no `.`/`..`, no spaces or shell characters). */
const hostPath = (what: string) =>
  z
    .string()
    .max(200)
    .regex(/^(?:\/[A-Za-z0-9_+-][A-Za-z0-9._+-]*)+$/, {
      error: (iss) => `invalid ${what} ${show(iss.input)}: an absolute path of letters, digits and '._+-' segments (no '.' or '..' segments, no spaces), e.g. /usr/local/bin/firecracker`,
    })
    .refine((p) => !p.split('/').some((s) => s === '.' || s === '..'), { error: (iss) => `invalid ${what} ${show(iss.input)}: '.' and '..' segments are not allowed` });

/** A Linux interface name (IFNAMSIZ 16 with the NUL), as `ip link` takes it. */
const interfaceName = z.string().regex(/^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,14}$/, {
  error: (iss) => `invalid bridge name ${show(iss.input)}: a Linux interface name of 1-15 letters, digits, '_', '.' or '-' (not starting with '.'), e.g. br0`,
});

/** An IPv4 subnet in CIDR form whose host bits are zero, with room for at least two /30s. */
export const ipv4Subnet = z.string().superRefine((value, ctx) => {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(value);
  const octets = m ? m.slice(1, 5).map(Number) : [];
  const prefix = m ? Number(m[5]) : NaN;
  if (!m || octets.some((o) => o > 255) || prefix < 8 || prefix > 29) {
    ctx.addIssue({ code: 'custom', message: `invalid subnet ${show(value)}: an IPv4 network in CIDR form with a prefix of /8 to /29, e.g. 172.30.0.0/16` });
    return;
  }
  const address = octets.reduce((a, o) => a * 256 + o, 0);
  if (address % 2 ** (32 - prefix) !== 0) {
    ctx.addIssue({ code: 'custom', message: `invalid subnet ${show(value)}: the host bits are not zero; write the network address, e.g. ${networkOf(address, prefix)}/${prefix}` });
  }
});

function networkOf(address: number, prefix: number): string {
  const network = address - (address % 2 ** (32 - prefix));
  return [24, 16, 8, 0].map((s) => Math.floor(network / 2 ** s) % 256).join('.');
}

/** Number of /30 blocks (one per microVM: host end, guest end) in a subnet. */
export function natBlocks(subnet: string): number {
  return 2 ** (32 - Number(subnet.split('/')[1])) / 4;
}

const network = z
  .union([z.strictObject({ bridge: interfaceName }), z.strictObject({ nat: z.strictObject({ subnet: ipv4Subnet }) })], {
    error: (iss) => `expected {bridge: <name>} or {nat: {subnet: <CIDR>}}, got ${show(iss.input)}`,
  })
  .describe('A tap per microVM on an existing bridge ({bridge: br0}), or a tap per microVM with NAT, each with its own /30 of the subnet ({nat: {subnet: 172.30.0.0/16}})');

const ratio = (what: string, fallback: number) => z.number().min(0.1).max(64).default(fallback).describe(what);

const limits = z
  .strictObject({
    maxMicrovms: z.int().min(1).max(100_000).optional().describe('At most this many microVMs per host'),
    cpuOversubscription: ratio("vCPUs per host CPU: a host takes microVMs while their vCPUs stay within its CPUs × this", 4),
    memoryOversubscription: ratio("Guest memory per byte of host memory: a host takes microVMs while their memory stays within its MemTotal × this", 1),
  })
  .prefault({})
  .describe('Per-host limits; a fleet spreads over the hosts, least loaded first');

/** A host (its SSH address, or `local`) may appear once. */
function hostLabel(host: unknown): string {
  if (host === 'local' || typeof host !== 'object' || host === null) return String(host);
  const h = host as { user?: string; host?: string; port?: number };
  return `${h.user ?? 'root'}@${h.host}:${h.port ?? 22}`;
}

/** Where the driver's API socket is inside a jail (short: unix socket paths are limited to 107 bytes). */
export const API_SOCKET = '/run/fc.sock';
/** Longest jail id the driver makes (see names.ts). */
export const MAX_JAIL_ID = 32;

const schema = z
  .strictObject({
    type: z.literal('firecracker'),
    hosts: z
      .array(hostSchema)
      .min(1)
      .superRefine((hosts, ctx) => {
        const seen = new Set<string>();
        hosts.forEach((h, i) => {
          const label = hostLabel(h);
          if (seen.has(label)) ctx.addIssue({ code: 'custom', path: [i], message: `host ${label} is listed twice` });
          seen.add(label);
        });
      })
      .describe('Firecracker hosts: "local" or SSH connections with a pinned host key'),
    firecracker: hostPath('firecracker path')
      .refine((p) => path.posix.basename(p).includes('firecracker'), { error: 'the jailer runs only an executable whose file name contains "firecracker"' })
      .default('/usr/local/bin/firecracker')
      .describe('The firecracker binary on each host'),
    jailer: hostPath('jailer path').default('/usr/local/bin/jailer').describe('The jailer binary on each host'),
    chrootBase: hostPath('chroot base').default('/srv/jailer').describe("The jailer's --chroot-base-dir; KubeDos keeps images and node state in <chrootBase>/kubedos/<target>"),
    uid: z.int().min(1).max(4_294_967_294).default(10_000).describe('The user the jailer runs firecracker as'),
    gid: z.int().min(1).max(4_294_967_294).default(10_000).describe('The group the jailer runs firecracker as'),
    cgroupVersion: z.union([z.literal(1), z.literal(2)]).default(2).describe('cgroup hierarchy the jailer puts CPU and memory limits in'),
    network,
    limits,
    layerSize: size(64 * MiB).prefault('4GiB').describe("Size of each microVM's writable layer (a sparse file; only what the node writes uses disk)"),
    ...machineShape({ memory: '512MiB', cpus: 1, maxCpus: 32 }),
  })
  .superRefine(
    ...objectRule((spec) => {
      // <chrootBase>/<exec name>/<jail id>/root + API_SOCKET must fit a unix socket path.
      const base = typeof spec.chrootBase === 'string' ? spec.chrootBase : '/srv/jailer';
      const exec = path.posix.basename(typeof spec.firecracker === 'string' ? spec.firecracker : '/usr/local/bin/firecracker');
      const length = `${base}/${exec}/${'x'.repeat(MAX_JAIL_ID)}/root${API_SOCKET}`.length;
      return length > 107
        ? { path: ['chrootBase'], message: `chrootBase ${show(base)} is too long: the API socket path in a jail would be ${length} bytes, and unix sockets allow 107; shorten chrootBase or the firecracker file name` }
        : undefined;
    }),
  )
  .describe('Firecracker hosts (jailer + API over SSH)');

/** A parsed `firecracker` target. */
export type FirecrackerTargetSpec = DeepReadonly<z.output<typeof schema>>;

export const firecracker = defineTarget({
  type: 'firecracker',
  description: 'Firecracker microVMs on hosts over SSH (jailer, API socket, MMDS identity)',
  accepts: ['firecracker'],
  pool: 'kvm',
  // Everything runs on the Firecracker hosts (jailer, firecracker, ip, mkfs.ext4, debugfs, flock, nft for NAT).
  tools: [],
  schema,
  slots: (raw) => {
    const hosts = Array.isArray(raw.hosts) ? raw.hosts.length : 0;
    const max = (raw.limits as { maxMicrovms?: unknown } | undefined)?.maxMicrovms;
    const subnet = (raw.network as { nat?: { subnet?: unknown } } | undefined)?.nat?.subnet;
    const perHost = [typeof max === 'number' ? max : Infinity, typeof subnet === 'string' && ipv4Subnet.safeParse(subnet).success ? natBlocks(subnet) : Infinity];
    const each = Math.min(...perHost);
    if (!hosts || !Number.isFinite(each)) return undefined;
    const field = each === perHost[0] ? 'limits' : 'network';
    const what = each === perHost[0] ? `limits.maxMicrovms ${each} on ${hosts} host${hosts === 1 ? '' : 's'} holds ${each * hosts} microVMs` : `network.nat.subnet ${String(subnet)} holds ${each} /30s per host, ${each * hosts} microVMs on ${hosts} host${hosts === 1 ? '' : 's'}`;
    return { count: each * hosts, field, what };
  },
  load: async (): Promise<DriverFactory<FirecrackerTargetSpec>> => {
    const { FirecrackerDriver } = await import('./driver');
    return (name, spec, env) => new FirecrackerDriver(name, spec, env);
  },
});
