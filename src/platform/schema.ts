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
  API_VERSION,
  ARCHITECTURES,
  COMPONENTS,
  DEFAULT_BASE_PACKAGES,
  DISTROS,
  HEALTH_CHECK_TYPES,
  KIND,
  SCHEDULE_ACTIONS,
  SUITES,
} from './catalog';
import { ASSEMBLED_INSTALLER_ISO } from '../foundry/installer-iso';
import { TARGETS } from '../targets';
import { DEFAULT_OUTPUTS, OUTPUT_FORMATS, TARGET_TYPES } from './plugins';

type Registered = typeof import('../targets/registry');
/** The schema of one registered target type. */
type TargetVariant = Registered[keyof Registered]['schema'];
type AnyTargetSpecOutput = z.output<TargetVariant>;
type AnyTargetSpecInput = z.input<TargetVariant>;
import {
  argvElement,
  choice,
  countOrPercent,
  cronExpression,
  describeTable,
  duration,
  httpUrl,
  name,
  objectRule,
  octalMode,
  owner,
  packageName,
  kernelModuleName,
  payloadPath,
  script,
  scriptName,
  size,
  sshPublicKey,
  timeZone,
  unique,
  unitName,
  unknownType,
} from './fields';
import { isRecord, show } from './show';

const MiB = 2 ** 20;

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
    initramfsModules: z
      .array(kernelModuleName)
      .superRefine(unique('module'))
      .prefault([])
      .describe(
        'Kernel modules the initramfs carries beyond those the output formats need (their disk controllers and, for clouds, ' +
          'network): e.g. the driver of a RAID controller that a bare-metal machine boots from',
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
      .prefault([...DEFAULT_OUTPUTS])
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

/**
 * One variant per registered target type, each the schema of its descriptor. A type this build
 * has no driver for is refused with the list of those it has.
 */
const targetSchema = z
  .discriminatedUnion('type', TARGETS.map((t) => t.schema) as unknown as [TargetVariant, ...TargetVariant[]], {
    error: (iss) => {
      if (iss.code !== 'invalid_union') return undefined;
      const type = isRecord(iss.input) ? iss.input.type : undefined;
      const supported = TARGET_TYPES.map((t) => t.name).join(', ');
      return type === undefined
        ? `missing "type"; expected one of ${supported}`
        : `target type ${show(type)} has no driver in this build; this build deploys to ${supported}`;
    },
  })
  .describe(`Where nodes run. ${describeTable(TARGET_TYPES)}`) as unknown as z.ZodType<AnyTargetSpecOutput, AnyTargetSpecInput>;

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
        command: z.array(argvElement).min(1).describe('argv of the command, run without a shell; exit 0 means healthy'),
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
  fleet: fleetSchema,
  healthCheck: healthCheckSchema,
  schedule: scheduleSchema,
} as const;
