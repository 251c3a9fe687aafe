/**
 * The `baremetal` target type: physical machines driven through their BMC over Redfish, installed
 * by virtual media (the image's installer ISO) or network-booted (the pxe bundle). A target is an
 * inventory of machines; a fleet takes machines from it, one node per machine.
 */
import { z } from 'zod';
import { choice, describeTable, duration, envVarName, hostAddress, httpUrl, name, objectRule, unique } from '../../platform/fields';
import { isRecord, show } from '../../platform/show';
import type { DeepReadonly } from '../../platform/types';
import { defineTarget, type DriverFactory } from '../descriptor';

/** How a machine gets its image. */
export const PROVISIONING = [
  {
    name: 'virtual-media',
    description: "the image's iso through the BMC's virtual CD: its installer writes the disk and powers off, then the machine boots the disk with its identity on a second, small CD (cidata)",
  },
  { name: 'pxe', description: "network boot: iPXE loads the image's pxe bundle from the boot server and the node runs from RAM, its identity fetched as NoCloud over HTTP" },
] as const;
export type Provisioning = (typeof PROVISIONING)[number]['name'];

/** What happens to a machine's disks when its node is destroyed. */
export const WIPE = [
  { name: 'none', description: 'leave them (the next install overwrites the disk)' },
  { name: 'secure-erase', description: "Redfish Drive.SecureErase on every drive the BMC lists (where the BMC offers it; a BMC that does not is an error)" },
] as const;

/** A MAC address, written with ':' or '-'; normalised to lowercase with ':'. */
export const macAddress = z
  .string()
  .regex(/^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$/, { error: (iss) => `invalid MAC address ${show(iss.input)}: expected six hex pairs, e.g. 52:54:00:12:34:56` })
  .transform((mac) => mac.toLowerCase().replace(/-/g, ':'));

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
/** A dotted-quad IPv4 address. */
export const ipv4 = z.string().regex(IPV4, { error: (iss) => `invalid IPv4 address ${show(iss.input)}` });

/**
 * SHA-256 fingerprint of a certificate (of its DER bytes, as `openssl x509 -noout -fingerprint
 * -sha256` prints it): 64 hex digits, colons and a `sha256:` prefix optional; normalised to
 * `AB:CD:…`.
 */
export const certFingerprint = z
  .string()
  .transform((text) => text.trim().replace(/^sha256\s*(fingerprint)?\s*[:=]\s*/i, ''))
  .refine((hex) => /^[0-9A-Fa-f]{64}$/.test(hex.replace(/:/g, '')) && (!hex.includes(':') || /^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){31}$/.test(hex)), {
    error: (iss) => `invalid certificate fingerprint ${show(iss.input)}: expected the SHA-256 of the BMC's certificate, 64 hex digits (as \`openssl x509 -noout -fingerprint -sha256\` prints it)`,
  })
  .transform((hex) => hex.replace(/:/g, '').toUpperCase().match(/../g)!.join(':'));

/** The BMC: an https:// URL of scheme, host and optional port; no credentials, no path. */
const bmcUrl = z.string().superRefine((value, ctx) => {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    ctx.addIssue({ code: 'custom', message: `BMC ${show(value)} is not a URL: write https://<address>[:port]`, input: value });
    return;
  }
  const problem =
    url.protocol !== 'https:' ? 'must be an https:// URL (Redfish runs over TLS)'
    : url.username || url.password ? 'must not hold credentials: name them in `credentials`'
    : url.pathname !== '/' || url.search || url.hash ? 'must name the BMC only (https://<address>[:port]), without a path'
    : undefined;
  if (problem) ctx.addIssue({ code: 'custom', message: `BMC ${show(value)} ${problem}`, input: value });
});

/** A Redfish ComputerSystem: its id (`1`, `System.Embedded.1`, a UUID) or its path under /redfish/v1/Systems/. */
const systemId = z.string().regex(/^(\/redfish\/v1\/Systems\/)?[A-Za-z0-9][A-Za-z0-9._-]*$/, {
  error: (iss) => `invalid Redfish system ${show(iss.input)}: give its id (e.g. 1 or System.Embedded.1) or /redfish/v1/Systems/<id>`,
});

/** Where the installer writes: a device path as the installing Linux sees it. */
const diskHint = z.string().regex(/^\/dev\/[A-Za-z0-9][A-Za-z0-9/_.:+-]*$/, {
  error: (iss) => `invalid disk ${show(iss.input)}: a device path such as /dev/sda, /dev/nvme0n1 or /dev/disk/by-id/…`,
});

/** A Linux network interface name. */
const interfaceName = z.string().regex(/^[A-Za-z0-9_.-]{1,15}$/, { error: (iss) => `invalid interface name ${show(iss.input)}` });

/** Exactly one of `keys` set: the message names them. */
function exactlyOne(keys: readonly string[], what: string) {
  return objectRule((value) => {
    const set = keys.filter((k) => value[k] !== undefined);
    return set.length === 1 ? undefined : { message: `${what}: set exactly one of ${keys.join(', ')}${set.length ? ` (got ${set.join(' and ')})` : ''}` };
  });
}

/** BMC credentials: by reference only (the spec never holds a password). */
const credentials = z
  .strictObject({
    username: z.string().min(1).optional().describe('BMC user name'),
    usernameEnv: envVarName.optional().describe('Environment variable (on the worker) holding the user name'),
    passwordEnv: envVarName.optional().describe('Environment variable (on the worker) holding the password'),
    passwordFile: z.string().min(1).optional().describe('File (on the worker) holding the password; a final newline is ignored'),
  })
  .superRefine(...exactlyOne(['username', 'usernameEnv'], 'credentials'))
  .superRefine(...exactlyOne(['passwordEnv', 'passwordFile'], 'credentials'))
  .describe('BMC credentials by reference: a user name (or the variable holding it) and the variable or file holding the password');

/** How the BMC's certificate is trusted. */
const tls = z
  .strictObject({
    fingerprint: certFingerprint.optional().describe("SHA-256 fingerprint of the BMC's own certificate (pinned; self-signed is fine)"),
    ca: z.string().min(1).optional().describe('PEM file of the CA that signed the BMC certificate (the address must match it)'),
    insecure: z.literal(true).optional().describe('Do not verify the BMC at all (logged as a warning on every use): lab machines only'),
  })
  .superRefine(...exactlyOne(['fingerprint', 'ca', 'insecure'], 'tls'))
  .describe("How the BMC's TLS certificate is verified: a pinned fingerprint, a CA file, or (only if you say so) not at all");

const machine = z
  .strictObject({
    name: name('machine name').describe('Name of the machine in this inventory, e.g. r1-u07'),
    bmc: bmcUrl.describe('Its BMC, https://<address>[:port]'),
    system: systemId.optional().describe("Its Redfish ComputerSystem when the BMC manages several; default: the BMC's only one"),
    mac: macAddress.describe('MAC address of the NIC on the provisioning network (network boot, DHCP reservations, leases)'),
    address: hostAddress.optional().describe("The node's address once booted (a DHCP reservation or static); PXE targets may leave it to be learnt"),
    disk: diskHint.optional().describe('Disk the installer writes; default: the first disk that is not the boot medium'),
    credentials: credentials.optional().describe("This BMC's credentials; default: the target's"),
    tls: tls.optional().describe("How this BMC's certificate is verified; default: the target's"),
  })
  .describe('A machine of the inventory');

const schema = z
  .strictObject({
    type: z.literal('baremetal'),
    provisioning: choice(PROVISIONING, 'provisioning method').default('virtual-media').describe(`How machines get the image. ${describeTable(PROVISIONING)}`),
    credentials: credentials.optional().describe('BMC credentials of every machine that names none'),
    tls: tls.optional().describe('TLS verification of every BMC whose machine names none'),
    bootServer: z
      .strictObject({
        url: httpUrl('bootServer.url')
          .refine((u) => /^https?:\/\/[^/]+\/?$/.test(u), { error: (iss) => `bootServer.url ${show(iss.input)} must be scheme, host and port only (the boot server answers at its root), e.g. http://10.0.0.5:8780` })
          .describe('Base URL at which the BMCs (virtual media) or the machines (PXE) reach this worker, e.g. http://10.0.0.5:8780'),
        listen: hostAddress.default('0.0.0.0').describe('Address the boot server binds on this worker; its port is the URL\'s'),
        tls: z
          .strictObject({
            cert: z.string().min(1).describe('PEM certificate file on the worker'),
            key: z.string().min(1).describe('PEM private key file on the worker'),
          })
          .optional()
          .describe('Serve HTTPS (an https:// url) with this certificate: virtual media only, as PXE nodes read their identity over http'),
      })
      .superRefine(
        ...objectRule((b) =>
          typeof b.url === 'string' && (b.tls !== undefined) !== b.url.startsWith('https:')
            ? { message: b.tls === undefined ? 'an https:// bootServer.url needs bootServer.tls (cert and key)' : 'bootServer.tls needs an https:// url' }
            : undefined,
        ),
      )
      .describe("The worker's own file server: it serves the artifacts of live provisioning jobs only, by digest, under per-node URLs"),
    dhcp: z
      .strictObject({
        interface: interfaceName.describe('Interface of the isolated provisioning network on this worker'),
        range: z.tuple([ipv4, ipv4]).describe('Addresses handed out, [first, last]'),
        netmask: ipv4.default('255.255.255.0'),
        router: ipv4.optional().describe('Default gateway handed out; none when omitted'),
        leaseTime: duration().prefault('1h').describe('DHCP lease time'),
      })
      .optional()
      .describe('PXE only: run a DHCP and TFTP server (dnsmasq) on an isolated provisioning network, answering only the inventory\'s machines; omit it when the network has its own DHCP (see the README for the lines it needs)'),
    leaseDir: z.string().min(1).optional().describe('Directory recording which node holds which machine, shared by every worker that provisions this inventory (a shared file system for several hosts); default $KUBEDOS_HOME/baremetal/leases'),
    wipe: choice(WIPE, 'wipe mode').default('none').describe(`What destroy does to the disks. ${describeTable(WIPE)}`),
    machines: z
      .array(machine)
      .min(1)
      .superRefine(unique('machine name', (m) => m.name))
      .superRefine(unique('MAC address', (m) => m.mac))
      .superRefine(unique('BMC system', (m) => `${m.bmc.replace(/\/+$/, '')} ${m.system ?? ''}`))
      .describe('The inventory: the machines fleets on this target may take, one node each'),
  })
  .superRefine(
    ...objectRule((t) => {
      const missing = machinesOf(t).filter((m) => m.value.credentials === undefined && t.credentials === undefined);
      return missing.length ? { message: `machines ${missing.map((m) => m.name).join(', ')} have no BMC credentials: set credentials on the target or on each machine`, path: ['credentials'] } : undefined;
    }),
  )
  .superRefine(
    ...objectRule((t) => {
      const missing = machinesOf(t).filter((m) => m.value.tls === undefined && t.tls === undefined);
      return missing.length ? { message: `machines ${missing.map((m) => m.name).join(', ')} say nothing about their BMC's certificate: set tls (fingerprint, ca or insecure) on the target or on each machine`, path: ['tls'] } : undefined;
    }),
  )
  .superRefine(
    ...objectRule((t) => {
      if (t.provisioning === 'pxe') return undefined;
      const missing = machinesOf(t).filter((m) => m.value.address === undefined);
      return missing.length
        ? { message: `machines ${missing.map((m) => m.name).join(', ')} have no address: an installed node is reached at its inventory address (a DHCP reservation or a static one), so virtual-media targets need one per machine`, path: ['machines'] }
        : undefined;
    }),
  )
  .superRefine(
    ...objectRule((t) =>
      t.provisioning === 'pxe' && isRecord(t.bootServer) && t.bootServer.tls !== undefined
        ? { message: 'a PXE target\'s boot server is http: the node\'s first boot reads its identity with no TLS client (the per-node URL is its secret); remove bootServer.tls', path: ['bootServer'] }
        : undefined,
    ),
  )
  .superRefine(
    ...objectRule((t) => (t.dhcp !== undefined && t.provisioning !== 'pxe' ? { message: 'dhcp is for provisioning: pxe (a DHCP/TFTP server for network boot); remove it, or set provisioning: pxe', path: ['dhcp'] } : undefined)),
  )
  .describe('Bare-metal machines through their BMC (Redfish): virtual-media install or PXE');

function machinesOf(t: Record<string, unknown>): { name: string; value: Record<string, unknown> }[] {
  return (Array.isArray(t.machines) ? t.machines : []).filter(isRecord).map((m, i) => ({ name: typeof m.name === 'string' ? m.name : `[${i}]`, value: m }));
}

/** A parsed `baremetal` target. */
export type BaremetalTargetSpec = DeepReadonly<z.output<typeof schema>>;
/** One machine of a parsed inventory. */
export type MachineSpec = BaremetalTargetSpec['machines'][number];

export const baremetal = defineTarget({
  type: 'baremetal',
  description: 'Physical machines through their BMC (Redfish): virtual-media install of the iso, or PXE of the pxe bundle',
  accepts: ['iso', 'pxe'],
  deploys: (raw) => (raw.provisioning === 'pxe' ? ['pxe'] : ['iso']),
  // The worker sits next to the machines (it serves their boot files), as kvm hosts sit next to their VMs.
  pool: 'kvm',
  // The installer ISO is set to install unattended, and each node's identity becomes a small cidata ISO.
  tools: ['xorriso'],
  schema,
  slots: (raw) => {
    const count = Array.isArray(raw.machines) ? raw.machines.length : 0;
    return count > 0 ? { count, field: 'machines', what: `machines lists ${count} machine${count === 1 ? '' : 's'}` } : undefined;
  },
  load: async (): Promise<DriverFactory<BaremetalTargetSpec>> => {
    const { BaremetalDriver } = await import('./driver');
    return (targetName, spec, env) => new BaremetalDriver(targetName, spec, env);
  },
});
