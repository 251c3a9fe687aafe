/** The `gcp` target type: Compute Engine instances from an image imported from the image's tar.gz. */
import { z } from 'zod';
import { show } from '../../platform/show';
import type { DeepReadonly } from '../../platform/types';
import { defineTarget, type DriverFactory } from '../descriptor';

// Google's own naming rules, so a bad name is refused at `validate` rather than by the API.
const project = z.string().regex(/^[a-z][a-z0-9-]{4,28}[a-z0-9]$/, {
  error: (iss) => `invalid Google Cloud project id ${show(iss.input)}: 6-30 lowercase letters, digits and '-', starting with a letter (gcloud config get project)`,
});
const zone = z.string().regex(/^[a-z]+-[a-z]+[0-9]+-[a-z]$/, {
  error: (iss) => `invalid zone ${show(iss.input)}: a Compute Engine zone such as europe-west4-a (gcloud compute zones list)`,
});
/** Bucket names: 3-63 lowercase letters, digits, '-', '_' and '.', starting and ending with a letter or digit. */
const bucket = z.string().regex(/^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$/, {
  error: (iss) => `invalid bucket name ${show(iss.input)}: 3-63 lowercase letters, digits, '-', '_' and '.', starting and ending with a letter or digit`,
});
/** RFC 1035 names, as Compute Engine uses for every resource. */
const rfc1035 = (what: string, example: string) =>
  z.string().regex(/^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/, {
    error: (iss) => `invalid ${what} ${show(iss.input)}: 1-63 lowercase letters, digits and '-', starting with a letter, e.g. ${example}`,
  });
/** A name, or a path relative to the API (`projects/<host>/regions/<r>/subnetworks/<s>` for a Shared VPC). */
const networkRef = (what: string, example: string, kind: 'networks' | 'subnetworks') =>
  z.string().regex(kind === 'networks' ? /^(projects\/[a-z][a-z0-9-]{4,28}[a-z0-9]\/global\/networks\/)?[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/ : /^(projects\/[a-z][a-z0-9-]{4,28}[a-z0-9]\/regions\/[a-z]+-[a-z]+[0-9]+\/subnetworks\/)?[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/, {
    error: (iss) => `invalid ${what} ${show(iss.input)}: a name such as ${example}, or projects/<project>/${kind === 'networks' ? 'global/networks' : 'regions/<region>/subnetworks'}/<name>`,
  });

export const DISK_TYPES = ['pd-standard', 'pd-balanced', 'pd-ssd', 'hyperdisk-balanced'] as const;

const schema = z
  .strictObject({
    type: z.literal('gcp'),
    project: project.describe('Project id'),
    zone: zone.describe('Zone of the instances, e.g. europe-west4-a'),
    bucket: bucket.describe('Cloud Storage bucket the image tar.gz is uploaded to (it must exist)'),
    machineType: rfc1035('machine type', 'e2-small').default('e2-small').describe('Machine type of every node'),
    network: networkRef('network', 'default', 'networks').default('default').describe('VPC network of the nodes'),
    subnetwork: networkRef('subnetwork', 'nodes', 'subnetworks').optional().describe("Subnetwork (in the zone's region); required on custom-mode networks"),
    diskType: z
      .enum(DISK_TYPES, { error: (iss) => `unknown disk type ${show(iss.input)}; expected one of ${DISK_TYPES.join(', ')}` })
      .default('pd-balanced')
      .describe('Boot disk type'),
    diskSizeGb: z.int().min(1).max(65_536).optional().describe("Boot disk size in GB; default: the image's size"),
    externalIp: z.boolean().default(false).describe('Give each node an ephemeral external IP; otherwise it is reached on its internal address'),
  })
  .describe('Google Cloud Compute Engine');

/** A parsed `gcp` target. */
export type GcpTargetSpec = DeepReadonly<z.output<typeof schema>>;

export const gcp = defineTarget({
  type: 'gcp',
  description: 'Google Compute Engine instances from an imported image (resumable Cloud Storage upload)',
  accepts: ['gce'],
  pool: 'cloud',
  tools: [],
  schema,
  load: async (): Promise<DriverFactory<GcpTargetSpec>> => {
    const { GcpDriver } = await import('./driver');
    return (name, spec, env) => new GcpDriver(name, spec, env);
  },
});
