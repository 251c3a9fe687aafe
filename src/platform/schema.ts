/**
 * The platform spec (`kubedos.yaml`) as zod schemas: the single definition from which the parsed
 * types, the defaults and the JSON Schema all come.
 *
 * Every object is strict (an unknown key is an error, because a misspelt key silently ignored is a
 * setting silently lost). Durations and sizes are strings in YAML and numbers after parsing.
 * Objects and lists are defaulted with `prefault`, which runs the default through the schema, so
 * nested defaults apply and each parse gets its own (freezable) objects.
 */
import { z } from 'zod';
import {
  ASSEMBLED_INSTALLER_ISO,
  ACCELERATORS,
  API_VERSION,
  ARCHITECTURES,
  COMPONENTS,
  type CatalogEntry,
  DEFAULT_BASE_PACKAGES,
  DISTROS,
  HEALTH_CHECK_TYPES,
  KIND,
  namesOf,
  OUTPUT_FORMATS,
  SCHEDULE_ACTIONS,
  SUITES,
  TARGET_TYPES,
} from './catalog';
import {
  countOrPercent,
  cronExpression,
  duration,
  envVarName,
  hostAddress,
  hostKeyPin,
  httpUrl,
  name,
  objectRule,
  octalMode,
  owner,
  packageName,
  payloadPath,
  script,
  scriptName,
  size,
  sshPublicKey,
  timeZone,
  unique,
  unitName,
} from './fields';
import { isRecord, show } from './show';

const MiB = 2 ** 20;

/** One of a catalog table's names, with a message listing them all. */
function choice<const T extends readonly CatalogEntry[]>(table: T, noun: string) {
  const names = namesOf(table);
  return z.enum(names, {
    error: (iss) => `${iss.input === undefined ? `missing ${noun}` : `unknown ${noun} ${show(iss.input)}`}; expected one of ${names.join(', ')}`,
  });
}

/** Message for a discriminated union whose `type` matches no variant. */
function unknownType(noun: string, table: readonly CatalogEntry[]) {
  return (iss: { code?: string; input?: unknown }): string | undefined => {
    if (iss.code !== 'invalid_union') return undefined;
    const type = isRecord(iss.input) ? iss.input.type : undefined;
    const expected = `expected one of ${table.map((t) => t.name).join(', ')}`;
    return type === undefined ? `missing "type"; ${expected}` : `unknown ${noun} ${show(type)}; ${expected}`;
  };
}

function describeTable(table: readonly CatalogEntry[]): string {
  return table.map((t) => `${t.name}: ${t.description}`).join('; ');
}

// ---------------------------------------------------------------------------------------------
// base

/** Derived rather than asked for: every Debian mirror serves security updates beside the archive. */
function securityMirrorFor(mirror: string): string {
  return `${mirror.replace(/\/+$/, '')}-security`;
}

/** Defaults first, then the user's packages; a user entry (e.g. a version pin) replaces a default of the same name. */
function withDefaultPackages(extra: readonly string[]): string[] {
  const named = new Set(extra.map((p) => p.split('=')[0]));
  return [...DEFAULT_BASE_PACKAGES.filter((p) => !named.has(p)), ...extra];
}

const baseSchema = z
  .strictObject({
    distro: choice(DISTROS, 'distribution').default('debian').describe(`Base distribution. ${describeTable(DISTROS)}`),
    suite: choice(SUITES, 'suite').default('bookworm').describe(`Debian suite (codename). ${describeTable(SUITES)}`),
    architecture: choice(ARCHITECTURES, 'architecture').default('amd64').describe('CPU architecture of every image'),
    mirror: httpUrl('mirror').default('http://deb.debian.org/debian').describe('Debian archive mirror URL'),
    securityMirror: httpUrl('securityMirror')
      .optional()
      .describe('Security archive URL; default: the mirror URL with "-security" appended (http://deb.debian.org/debian-security)'),
    components: z
      .array(choice(COMPONENTS, 'component'))
      .min(1)
      .superRefine(unique('component'))
      .prefault(['main'])
      .describe('Archive components to enable'),
    packages: z
      .array(packageName)
      .superRefine(unique('package'))
      .prefault([])
      .describe(
        `Packages ADDED to the defaults every image gets (${DEFAULT_BASE_PACKAGES.join(', ')}); ` +
          'pin a version with name=version. The parsed spec lists the defaults followed by these.',
      ),
    sourceDateEpoch: z
      .int()
      .min(0)
      .max(253_402_300_799)
      .optional()
      .describe('SOURCE_DATE_EPOCH for reproducible builds (seconds since 1970); when absent the lock file supplies it, never the clock'),
  })
  .transform((base) => ({
    ...base,
    securityMirror: base.securityMirror ?? securityMirrorFor(base.mirror),
    packages: withDefaultPackages(base.packages),
  }))
  .describe('The distribution every image is bootstrapped from');

// ---------------------------------------------------------------------------------------------
// images

/** A payload file in the parsed spec. Exactly one of `content` and `source` is set. */
export interface PayloadFile {
  /** Absolute path inside the image. */
  path: string;
  /** Inline content. */
  content?: string;
  /** Absolute path of the file to copy (after loading; the spec gives it relative to itself). */
  source?: string;
  /** sha256 (hex) of the `source` file, recorded when the spec was loaded; part of the spec digest. */
  sourceSha256?: string;
  /** Four octal digits, e.g. `0644`. */
  mode: string;
  /** `user:group`. */
  owner: string;
}

const payloadFileSchema = z
  .strictObject({
    path: payloadPath.describe('Absolute path inside the image, e.g. /etc/kubedos/role'),
    content: z.string().optional().describe('Inline file content (exactly one of content and source)'),
    source: z.string().min(1).optional().describe('File to copy, relative to the spec file (exactly one of content and source)'),
    mode: octalMode.prefault('0644').describe('Octal permission string, quoted: "0644"'),
    owner: owner.default('root:root').describe('Owner as user:group'),
  })
  .superRefine(
    ...objectRule((file) =>
      (file.content === undefined) === (file.source === undefined)
        ? { message: 'set exactly one of content (inline text) or source (a file path relative to the spec)' }
        : undefined,
    ),
  )
  .transform((file): PayloadFile => file)
  .describe('A file placed in the image');

const unitSchema = z
  .strictObject({
    name: unitName.describe('Unit file name, e.g. hello.service'),
    content: z.string().min(1).describe('The unit file text'),
    enable: z.boolean().default(true).describe('Enable the unit (systemctl enable) at build time'),
  })
  .describe('A systemd unit installed in /etc/systemd/system');

const firstBootSchema = z
  .strictObject({
    name: scriptName.describe('Script name; scripts run in list order, once, at first boot'),
    script: script.describe('Executable text starting with an interpreter line (#!/bin/sh)'),
  })
  .describe('A script run once at first boot, before the node reports ready');

const imageSchema = z
  .strictObject({
    role: name('role')
      .optional()
      .describe('Role of the nodes (free DNS label; common: master, worker, etcd, lb, prometheus, grafana, storage); default: the image name'),
    hostnamePrefix: name('hostname prefix').optional().describe('Prefix of node hostnames; default: the image name'),
    packages: z.array(packageName).superRefine(unique('package')).prefault([]).describe('Packages added to this image on top of base.packages'),
    files: z
      .array(payloadFileSchema)
      .superRefine(unique<PayloadFile>('file path', (f) => f.path))
      .prefault([])
      .describe('Payload files'),
    units: z
      .array(unitSchema)
      .superRefine(unique<{ name: string }>('unit', (u) => u.name))
      .prefault([])
      .describe('systemd units'),
    firstBoot: z
      .array(firstBootSchema)
      .superRefine(unique<{ name: string }>('script', (s) => s.name))
      .prefault([])
      .describe('Scripts run once at first boot, in order'),
    authorizedKeys: z
      .array(sshPublicKey)
      .superRefine(unique('key'))
      .prefault([])
      .describe('OpenSSH public keys baked into root\'s authorized_keys (deploy-time identity can add more per node)'),
    passwordLogin: z.boolean().default(false).describe('Allow password login; default false: no password hashes in images unless asked'),
    disk: z
      .strictObject({
        size: size(64 * MiB).prefault('2GiB').describe('Disk size, e.g. 2GiB (parsed to bytes)'),
      })
      .prefault({})
      .describe('Disk layout'),
    outputs: z
      .array(choice(OUTPUT_FORMATS, 'format'))
      .min(1)
      .superRefine(unique('format'))
      .prefault(['qcow2'])
      .describe(`Artifact formats to build. ${describeTable(OUTPUT_FORMATS)}`),
    installerIso: z
      .strictObject({
        source: z
          .string()
          .min(1)
          .refine((s) => !/^[a-z][a-z0-9+.-]*:\/\//i.test(s) || /^https?:\/\//.test(s), {
            error: (iss) => `installer ISO ${show(iss.input)}: only http(s) URLs are fetched; use a path for a local file`,
          })
          .describe(
            `The Debian installer ISO: a path (relative to the spec file), an http(s) URL, or "${ASSEMBLED_INSTALLER_ISO}" to assemble installer media from the build host's debian-installer-12-netboot-amd64 package`,
          ),
        sha256: z
          .string()
          .regex(/^[0-9a-f]{64}$/, { error: (iss) => `${show(iss.input)} is not a sha256: write its 64 lowercase hex digits (sha256sum prints them)` })
          .describe('sha256 of the ISO, checked before it is used'),
      })
      .optional()
      .describe('Debian installer media (netinst, DVD or mini.iso) that the installer-media output repacks with a preseed installing this image\'s role'),
  })
  .superRefine(
    ...objectRule((image) =>
      Array.isArray(image.outputs) && image.outputs.includes('installer-media') && image.installerIso === undefined
        ? { message: 'the installer-media output needs installerIso: the Debian installer ISO to repack (source: path or URL, sha256)', path: ['installerIso'] }
        : undefined,
    ),
  )
  .describe('An OS image: the base plus a role payload, built once and deployed to many nodes');

// ---------------------------------------------------------------------------------------------
// targets

const HOST_KEY_PIN_MESSAGE =
  'a host key must be pinned: set hostKey (OpenSSH public key or SHA256 fingerprint) or knownHosts; KubeDos never trusts a host key on first use';

const sshConnectionSchema = z
  .strictObject({
    host: hostAddress.describe('Host name or IP address'),
    port: z.int().min(1).max(65_535).default(22).describe('SSH port'),
    user: z
      .string()
      .regex(/^[a-z_][a-z0-9_-]*$/, { error: (iss) => `invalid user name ${show(iss.input)}` })
      .default('root')
      .describe('Remote user'),
    identityFile: z.string().min(1).optional().describe('Private key file; default: the SSH agent'),
    hostKey: hostKeyPin.optional().describe('Pinned host key: an OpenSSH public key line or its SHA256:… fingerprint'),
    knownHosts: z.string().min(1).optional().describe('known_hosts file holding the pinned host key'),
  })
  .superRefine(
    ...objectRule((ssh) => (ssh.hostKey === undefined && ssh.knownHosts === undefined ? { message: HOST_KEY_PIN_MESSAGE } : undefined)),
  )
  .describe('An SSH connection with a pinned host key');

const hostSchema = z
  .union([z.literal('local'), sshConnectionSchema], {
    error: (iss) => `expected "local" or an SSH connection mapping {host, user, port, hostKey or knownHosts}, got ${show(iss.input)}`,
  })
  .describe('"local" for this machine, or an SSH connection');

const machineShape = {
  memory: size(64 * MiB).prefault('1GiB').describe('Memory per node, e.g. 1GiB (parsed to bytes)'),
  cpus: z.int().min(1).max(256).default(2).describe('Virtual CPUs per node'),
};

const qemuTarget = z
  .strictObject({
    type: z.literal('qemu'),
    host: hostSchema.default('local'),
    accel: choice(ACCELERATORS, 'accelerator').default('auto').describe(`QEMU accelerator. ${describeTable(ACCELERATORS)}`),
    ...machineShape,
    network: z
      .union([z.literal('user'), z.strictObject({ bridge: z.string().regex(/^[A-Za-z0-9_.-]{1,15}$/, { error: 'invalid bridge name' }) })], {
        error: (iss) => `expected "user" or {bridge: <name>}, got ${show(iss.input)}`,
      })
      .default('user')
      .describe('"user" (NAT, no root needed) or {bridge: br0}'),
  })
  .describe('QEMU/KVM');

const proxmoxTarget = z
  .strictObject({
    type: z.literal('proxmox'),
    ssh: sshConnectionSchema,
    node: z.string().min(1).describe('Proxmox node name, e.g. pve1'),
    storage: z.string().min(1).default('local-lvm').describe('Storage pool for disks'),
    bridge: z.string().min(1).default('vmbr0').describe('Network bridge for VMs'),
    vmidRange: z
      .tuple([z.int().min(100).max(999_999_999), z.int().min(100).max(999_999_999)])
      .superRefine(([low, high], ctx) => {
        if (low > high) ctx.addIssue({ code: 'custom', message: `vmidRange [${low}, ${high}] is reversed; write [low, high]` });
      })
      .prefault([9000, 9999])
      .describe('VM ids KubeDos may use, inclusive; VMs outside it are never touched'),
    ...machineShape,
  })
  .describe('Proxmox VE');

const vsphereTarget = z
  .strictObject({
    type: z.literal('vsphere'),
    url: httpUrl('url').describe('vCenter or ESXi SDK URL, e.g. https://vcenter.example/sdk'),
    datacenter: z.string().min(1),
    datastore: z.string().min(1),
    folder: z.string().min(1).optional().describe('VM folder'),
    resourcePool: z.string().min(1).optional(),
    network: z.string().min(1).default('VM Network').describe('Port group for VMs'),
    insecure: z.boolean().default(false).describe('Skip TLS certificate verification (lab vCenters only)'),
    credentialsEnv: z
      .strictObject({
        username: envVarName.default('GOVC_USERNAME'),
        password: envVarName.default('GOVC_PASSWORD'),
      })
      .prefault({})
      .describe('NAMES of the environment variables holding the credentials; secrets are never written in the spec'),
    ...machineShape,
  })
  .describe('VMware vSphere/ESXi');

const firecrackerTarget = z
  .strictObject({
    type: z.literal('firecracker'),
    host: hostSchema.default('local'),
    memory: size(64 * MiB).prefault('512MiB').describe('Memory per microVM (parsed to bytes)'),
    cpus: z.int().min(1).max(32).default(1).describe('vCPUs per microVM'),
  })
  .describe('Firecracker microVMs');

const awsTarget = z
  .strictObject({
    type: z.literal('aws'),
    region: z.string().regex(/^[a-z]{2}(?:-[a-z]+)+-\d+$/, { error: (iss) => `invalid AWS region ${show(iss.input)}, e.g. eu-west-1` }),
    bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, { error: (iss) => `invalid S3 bucket name ${show(iss.input)}` }).describe('S3 bucket for image import'),
    instanceType: z.string().min(1).default('t3.small'),
    subnet: z.string().regex(/^subnet-[0-9a-f]+$/, { error: 'expected a subnet id such as subnet-0abc123' }).optional(),
  })
  .describe('Amazon EC2; credentials come from the standard AWS environment or profile');

const azureTarget = z
  .strictObject({
    type: z.literal('azure'),
    location: z.string().min(1).describe('Azure region, e.g. westeurope'),
    resourceGroup: z.string().min(1),
    storageAccount: z.string().regex(/^[a-z0-9]{3,24}$/, { error: 'invalid storage account name (3-24 lowercase letters and digits)' }),
    vmSize: z.string().min(1).default('Standard_B2s'),
  })
  .describe('Microsoft Azure; credentials come from the az CLI login or the environment');

const gcpTarget = z
  .strictObject({
    type: z.literal('gcp'),
    project: z.string().min(1),
    zone: z.string().min(1).describe('e.g. europe-west1-b'),
    bucket: z.string().min(1).describe('Cloud Storage bucket for image import'),
    machineType: z.string().min(1).default('e2-small'),
  })
  .describe('Google Compute Engine; credentials come from gcloud or GOOGLE_APPLICATION_CREDENTIALS');

const baremetalTarget = z
  .strictObject({
    type: z.literal('baremetal'),
    bootServer: hostSchema.default('local').describe('The machine serving DHCP/TFTP/HTTP boot, "local" or over SSH'),
    machines: z
      .array(z.string().regex(/^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/, { error: (iss) => `invalid MAC address ${show(iss.input)}; use lowercase aa:bb:cc:dd:ee:ff` }))
      .min(1)
      .superRefine(unique('MAC address'))
      .describe('MAC addresses of the machines KubeDos may (re)install'),
  })
  .describe('Bare metal');

const hollowTarget = z
  .strictObject({
    type: z.literal('hollow'),
    bootDelay: duration().prefault('0s').describe('Simulated boot time of each node'),
    unhealthyImages: z
      .array(name('image name'))
      .default([])
      .describe('Fault injection: nodes of these images boot but never pass their health check (rollback drills)'),
  })
  .describe('Hollow nodes for scale tests: each node is a tiny local process');

const targetSchema = z
  .discriminatedUnion(
    'type',
    [qemuTarget, proxmoxTarget, vsphereTarget, firecrackerTarget, awsTarget, azureTarget, gcpTarget, baremetalTarget, hollowTarget],
    { error: unknownType('target type', TARGET_TYPES) },
  )
  .describe(`Where nodes run. ${describeTable(TARGET_TYPES)}`);

// ---------------------------------------------------------------------------------------------
// fleets

const isZero = (value: unknown): boolean => value === 0 || value === '0%';

const rolloutSchema = z
  .strictObject({
    maxSurge: countOrPercent.default(1).describe('Nodes created above replicas during a rollout (count or "25%")'),
    maxUnavailable: countOrPercent.default(0).describe('Nodes that may be missing below replicas during a rollout (count or "25%")'),
    failureThreshold: z.int().min(1).default(1).describe('Failed nodes after which the rollout stops and rolls back'),
    batchSize: z.int().min(1).max(1000).default(50).describe('Most nodes provisioned concurrently'),
  })
  .superRefine(
    ...objectRule((r) =>
      isZero(r.maxSurge ?? 1) && isZero(r.maxUnavailable ?? 0)
        ? { message: 'maxSurge and maxUnavailable are both 0, so a rollout could never replace a node; set maxSurge: 1' }
        : undefined,
    ),
  )
  .describe('How nodes are replaced when the image changes');

const checkTiming = {
  timeout: duration().prefault('5m').describe('How long a new node has to pass its check, e.g. 5m'),
  interval: duration().prefault('5s').describe('Time between probes, e.g. 5s'),
  retries: z.int().min(0).max(100).default(3).describe('Times a node that missed its deadline is replaced by a fresh one before it counts as failed'),
};

const port = z.int().min(1).max(65_535);

const healthCheckSchema = z
  .discriminatedUnion(
    'type',
    [
      z.strictObject({ type: z.literal('readiness'), ...checkTiming }),
      z.strictObject({ type: z.literal('tcp'), port, ...checkTiming }),
      z.strictObject({
        type: z.literal('http'),
        port,
        path: z.string().regex(/^\//, { error: 'the path must start with /' }).default('/'),
        expectStatus: z.int().min(100).max(599).default(200),
        ...checkTiming,
      }),
      z.strictObject({
        type: z.literal('ssh'),
        command: z.array(z.string()).min(1).describe('argv of the command, run without a shell; exit 0 means healthy'),
        ...checkTiming,
      }),
    ],
    { error: unknownType('health check type', HEALTH_CHECK_TYPES) },
  )
  .prefault({ type: 'readiness' })
  .describe(`How a new node proves it is healthy; default: readiness. ${describeTable(HEALTH_CHECK_TYPES)}`);

const fleetSchema = z
  .strictObject({
    image: name('image name').describe('Name of an image in images'),
    target: name('target name').describe('Name of a target in targets'),
    replicas: z.int().min(0).max(10_000).default(1).describe('Number of identical nodes'),
    rollout: rolloutSchema.prefault({}),
    healthCheck: healthCheckSchema,
  })
  .describe('A set of identical nodes of one image on one target');

// ---------------------------------------------------------------------------------------------
// schedules

const scheduleSchema = z
  .strictObject({
    cron: cronExpression.describe('Five-field cron expression, e.g. "0 3 * * *"'),
    timezone: timeZone.default('UTC').describe('IANA time zone the cron expression is read in'),
    action: choice(SCHEDULE_ACTIONS, 'schedule action').default('rebuildHerd').describe(`What to run. ${describeTable(SCHEDULE_ACTIONS)}`),
    fleets: z.array(name('fleet name')).min(1).superRefine(unique('fleet')).optional().describe('Fleets acted on; default: all fleets'),
    paused: z.boolean().default(false).describe('Create the schedule paused'),
  })
  .describe('A recurring run, e.g. the nightly rebuild of the herd');

// ---------------------------------------------------------------------------------------------
// the document

const metadataSchema = z
  .strictObject({
    name: name('platform name').describe('Name of the platform (DNS label)'),
    description: z.string().optional(),
  })
  .describe('Identity of the platform');

function mapValues<T, U>(record: Record<string, T>, fn: (value: T, key: string) => U): Record<string, U> {
  return Object.fromEntries(Object.entries(record).map(([key, value]) => [key, fn(value, key)]));
}

/** The spec as written, defaults applied field by field. */
const documentSchema = z.strictObject({
  apiVersion: z
    .literal(API_VERSION, {
      error: (iss) =>
        iss.input === undefined ? `missing apiVersion; a spec starts with "apiVersion: ${API_VERSION}"` : `unsupported apiVersion ${show(iss.input)}; expected ${API_VERSION}`,
    })
    .describe('Spec format version'),
  kind: z.literal(KIND, { error: (iss) => `expected kind: ${KIND}, got ${show(iss.input)}` }),
  metadata: metadataSchema,
  base: baseSchema.prefault({}),
  images: z
    .record(name('image name'), imageSchema)
    .superRefine((images, ctx) => {
      if (Object.keys(images).length === 0) ctx.addIssue({ code: 'custom', message: 'define at least one image' });
    })
    .describe('Images by name'),
  targets: z.record(name('target name'), targetSchema).prefault({}).describe('Targets by name'),
  fleets: z.record(name('fleet name'), fleetSchema).prefault({}).describe('Fleets by name'),
  schedules: z.record(name('schedule name'), scheduleSchema).prefault({}).describe('Schedules by name'),
});

/** Defaults that depend on names elsewhere in the document, applied once the document is valid. */
function applyNameDefaults(doc: z.output<typeof documentSchema>) {
  // Sorted so that reordering fleets in the file does not change the spec digest.
  const allFleets = Object.keys(doc.fleets).sort();
  return {
    ...doc,
    images: mapValues(doc.images, (image, imageName) => ({
      ...image,
      role: image.role ?? imageName,
      hostnamePrefix: image.hostnamePrefix ?? imageName,
    })),
    schedules: mapValues(doc.schedules, (schedule) => ({ ...schedule, fleets: schedule.fleets ?? [...allFleets] })),
  };
}

/** The whole platform spec: parse a YAML-decoded value with it to get a fully defaulted spec. */
export const specSchema = documentSchema
  .transform(applyNameDefaults)
  .describe('KubeDos platform spec: the images to manufacture, where they run and how fleets of them are rolled out');

/** Schemas of the parts, for callers validating a fragment (e.g. a target given on the command line). */
export const schemas = {
  base: baseSchema,
  image: imageSchema,
  payloadFile: payloadFileSchema,
  target: targetSchema,
  sshConnection: sshConnectionSchema,
  fleet: fleetSchema,
  healthCheck: healthCheckSchema,
  schedule: scheduleSchema,
} as const;
