/** The `vsphere` target type: VMs on vCenter (linked clones of a template) or a standalone ESXi host, driven with govc. */
import { z } from 'zod';
import { choice, describeTable, envVarName, objectRule } from '../../platform/fields';
import { machineShape } from '../../platform/target-fields';
import { show } from '../../platform/show';
import type { DeepReadonly } from '../../platform/types';
import { defineTarget, type DriverFactory } from '../descriptor';

/** Where a value is read on the worker: an environment variable or a file (never the value in the spec). */
const envRef = z.strictObject({ env: envVarName.describe('Name of an environment variable of the vsphere worker') });
const fileRef = z.strictObject({ file: z.string().regex(/^\//, { error: (iss) => `${show(iss.input)} is not an absolute path` }).describe('Absolute path of a file on the vsphere worker') });

/** A secret: `{env: NAME}` or `{file: PATH}`. */
const secretRef = z.union([envRef, fileRef], {
  error: (iss) =>
    typeof iss.input === 'string'
      ? 'a secret is never written in the spec: name where the worker reads it, {env: NAME} or {file: /path}'
      : `expected {env: NAME} or {file: /path}, got ${show(iss.input)}`,
});

/** The SDK endpoint: https only, no credentials in it. */
const sdkUrl = z.string().superRefine((value, ctx) => {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    ctx.addIssue({ code: 'custom', message: `${show(value)} is not a URL; write https://vcenter.example.com/sdk`, input: value });
    return;
  }
  if (url.protocol !== 'https:') ctx.addIssue({ code: 'custom', message: `${show(value)}: vSphere is reached over https only`, input: value });
  if (url.username || url.password) ctx.addIssue({ code: 'custom', message: 'the URL must not carry credentials: set credentials.username and credentials.password', input: value });
});

/** A certificate thumbprint as vSphere shows it: SHA-256 (or SHA-1) bytes in colon-separated hex. */
export const THUMBPRINT_PATTERN = /^(?:[0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}$|^(?:[0-9A-Fa-f]{2}:){19}[0-9A-Fa-f]{2}$/;
const thumbprint = z.string().regex(THUMBPRINT_PATTERN, {
  error: (iss) => `invalid thumbprint ${show(iss.input)}: the certificate's SHA-256 (or SHA-1) in colon-separated hex, e.g. 4C:3D:58:…:D8, as vCenter shows it`,
});

/** One inventory name (a datacenter, cluster, host, datastore, network). */
const inventoryName = (what: string) =>
  z.string().regex(/^[^/\\\u0000-\u001f]{1,80}$/, { error: (iss) => `invalid ${what} ${show(iss.input)}: an inventory name of 1-80 characters without '/' or '\\'` });
/** A path of inventory names below a root (a VM folder, a resource pool): names joined by '/'. */
const inventoryPath = (what: string) =>
  z.string().regex(/^[^/\\\u0000-\u001f]{1,80}(?:\/[^/\\\u0000-\u001f]{1,80})*$/, {
    error: (iss) => `invalid ${what} ${show(iss.input)}: names joined by '/', without a leading or trailing '/', e.g. kubedos or teams/kubedos`,
  });

export const CLONE_MODES = [
  { name: 'linked', description: 'a delta disk on the template snapshot: seconds, whatever the image size (vCenter)' },
  { name: 'full', description: 'a full copy of the template disk per node' },
] as const;

const TLS_MESSAGE =
  'tls: pin the server certificate with thumbprint (its SHA-256, as vCenter shows it) or trust a CA with caFile; insecure: true only for a lab';

const schema = z
  .strictObject({
    type: z.literal('vsphere'),
    url: z.union([sdkUrl, envRef], { error: (iss) => `expected an https URL or {env: NAME}, got ${show(iss.input)}` }).describe('vCenter or ESXi SDK URL, e.g. https://vcenter.example.com/sdk, or {env: NAME}'),
    credentials: z
      .strictObject({
        username: z
          .union([z.string().min(1), envRef, fileRef], { error: (iss) => `expected a user name, {env: NAME} or {file: /path}, got ${show(iss.input)}` })
          .default({ env: 'GOVC_USERNAME' })
          .describe('User name, or {env: NAME} / {file: /path}'),
        password: secretRef.default({ env: 'GOVC_PASSWORD' }).describe('Where the worker reads the password: {env: NAME} or {file: /path}'),
      })
      .prefault({})
      .describe('Credentials, read on the vsphere worker; the spec and workflow history only name where'),
    tls: z
      .strictObject({
        thumbprint: z.union([thumbprint, envRef], { error: (iss) => `expected a thumbprint or {env: NAME}, got ${show(iss.input)}` }).optional().describe('Pinned certificate thumbprint (SHA-256 or SHA-1, colon hex), or {env: NAME}'),
        caFile: fileRef.shape.file.optional().describe('PEM CA bundle on the worker that the certificate must chain to'),
        insecure: z.literal(true, { error: 'insecure can only be true (omit it otherwise)' }).optional().describe('Skip certificate verification (lab only; a warning on every connection)'),
      })
      .superRefine(
        ...objectRule((tls) => {
          const set = ['thumbprint', 'caFile', 'insecure'].filter((k) => tls[k] !== undefined);
          return set.length === 1 ? undefined : { message: set.length === 0 ? TLS_MESSAGE : `tls: set one of thumbprint, caFile or insecure, not ${set.join(' and ')}` };
        }),
      )
      .describe('How the certificate of vCenter/ESXi is verified: exactly one of thumbprint, caFile, insecure'),
    datacenter: inventoryName('datacenter').optional().describe("Datacenter; default: the only one (ESXi: ha-datacenter)"),
    cluster: inventoryName('cluster').optional().describe('Cluster the nodes run in'),
    host: inventoryName('host').optional().describe('Host the nodes run on (inside cluster when both are set)'),
    resourcePool: inventoryPath('resource pool').optional().describe("Resource pool below the cluster's or host's root pool, e.g. kubedos; default: the root pool"),
    datastore: inventoryPath('datastore').describe('Datastore for templates and node disks'),
    folder: inventoryPath('folder').default('kubedos').describe("VM folder KubeDos owns, below the datacenter's VM folder (created when missing; ESXi has none)"),
    network: inventoryPath('network').default('VM Network').describe('Port group of the nodes\' NIC'),
    clone: choice(CLONE_MODES, 'clone mode').default('linked').describe(`How nodes are made from the template. ${describeTable(CLONE_MODES)}. ESXi without vCenter always copies the disk`),
    concurrency: z.int().min(1).max(64).default(4).describe('vSphere operations one worker runs at once against this target'),
    ...machineShape({ memory: '2GiB', cpus: 2 }),
  })
  .superRefine(
    ...objectRule((t) => (t.resourcePool !== undefined && t.cluster === undefined && t.host === undefined ? { message: 'resourcePool needs cluster or host: it is a pool below their root pool', path: ['resourcePool'] } : undefined)),
  )
  .describe('VMware vSphere (vCenter) or a standalone ESXi host');

/** A parsed `vsphere` target. */
export type VsphereTargetSpec = DeepReadonly<z.output<typeof schema>>;

export const vsphere = defineTarget({
  type: 'vsphere',
  description: 'VMware vCenter (linked clones of a template imported from the OVA) or a standalone ESXi host, through govc',
  accepts: ['ova'],
  pool: 'vsphere',
  tools: ['govc'],
  schema,
  load: async (): Promise<DriverFactory<VsphereTargetSpec>> => {
    const { VsphereDriver } = await import('./driver');
    return (name, spec, env) => new VsphereDriver(name, spec, env);
  },
});
