/** The `aws` target type: EC2 instances from an AMI that KubeDos imports from the image's `ami` artifact. */
import { z } from 'zod';
import { objectRule, unique } from '../../platform/fields';
import { show } from '../../platform/show';
import type { DeepReadonly } from '../../platform/types';
import { defineTarget, type DriverFactory } from '../descriptor';

// EC2's and S3's own grammars, so a typo is refused at `validate` rather than by an API call.
const region = z.string().regex(/^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d{1,2}$/, {
  error: (iss) => `invalid AWS region ${show(iss.input)}: e.g. eu-west-1, us-east-2`,
});
const subnetId = z.string().regex(/^subnet-[0-9a-f]{8,17}$/, { error: (iss) => `invalid subnet id ${show(iss.input)}: e.g. subnet-0123456789abcdef0` });
const securityGroupId = z.string().regex(/^sg-[0-9a-f]{8,17}$/, { error: (iss) => `invalid security group id ${show(iss.input)}: e.g. sg-0123456789abcdef0` });
/** S3 bucket naming rules (general purpose buckets). */
const bucketName = z.string().regex(/^(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, {
  error: (iss) => `invalid S3 bucket name ${show(iss.input)}: 3-63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit`,
});
const keyPrefix = z.string().regex(/^([A-Za-z0-9!_.*'()-]+\/)*$/, {
  error: (iss) => `invalid S3 key prefix ${show(iss.input)}: '/'-separated words ending with '/', e.g. kubedos-imports/ (empty for the bucket's root)`,
});
const profileName = z.string().regex(/^[A-Za-z0-9_.+@-]{1,128}$/, { error: (iss) => `invalid AWS profile name ${show(iss.input)}` });
const roleArn = z.string().regex(/^arn:aws[a-z-]*:iam::\d{12}:role\/[A-Za-z0-9+=,.@_/-]{1,512}$/, {
  error: (iss) => `invalid IAM role ARN ${show(iss.input)}: e.g. arn:aws:iam::123456789012:role/kubedos-deployer`,
});
const roleName = z.string().regex(/^[A-Za-z0-9+=,.@_-]{1,64}$/, { error: (iss) => `invalid IAM role name ${show(iss.input)}` });

/** Instance families that run on Xen, not Nitro: no UEFI boot there, which the ami artifact needs. */
export const XEN_FAMILIES = ['t1', 't2', 'm1', 'm2', 'm3', 'm4', 'c1', 'c3', 'c4', 'r3', 'r4', 'x1', 'x1e', 'i2', 'i3', 'd2', 'h1', 'g2', 'g3', 'p2', 'p3', 'f1', 'cc2', 'cr1', 'hs1'] as const;

const instanceType = z
  .string()
  .regex(/^[a-z][a-z0-9-]*\.[a-z0-9-]+$/, { error: (iss) => `invalid instance type ${show(iss.input)}: e.g. t3.small, m6i.large` })
  .superRefine((value, ctx) => {
    const family = value.split('.')[0]!;
    if ((XEN_FAMILIES as readonly string[]).includes(family) && !value.endsWith('.metal')) {
      ctx.addIssue({ code: 'custom', input: value, message: `instance type ${value} is a Xen instance: the ami artifact boots with UEFI, which EC2 offers on Nitro instances only (e.g. t3.small, m6i.large)` });
    }
  });

function cidrProblem(value: string): string | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(value);
  if (!m || m.slice(1, 5).some((o) => Number(o) > 255) || Number(m[5]) > 32) return `invalid IPv4 CIDR ${show(value)}: e.g. 203.0.113.0/24`;
  const ip = m.slice(1, 5).reduce((a, o) => a * 256 + Number(o), 0);
  const bits = Number(m[5]);
  if (bits < 32 && ip % 2 ** (32 - bits) !== 0) return `${value} has host bits set: write the network address, e.g. ${m.slice(1, 4).join('.')}.0/${bits}`;
  return undefined;
}
const cidr = z.string().superRefine((value, ctx) => {
  const message = cidrProblem(value);
  if (message) ctx.addIssue({ code: 'custom', input: value, message });
});

/** User tags: AWS's limits (128/256 characters), and the `aws:` and `kubedos:` prefixes are reserved. */
const TAG_KEY = /^(?!aws:)(?!kubedos:)[\p{L}\p{Z}\p{N}_.:/=+\-@]{1,128}$/u;
const tagValue = z.string().regex(/^[\p{L}\p{Z}\p{N}_.:/=+\-@]{0,256}$/u, { error: (iss) => `invalid tag value ${show(iss.input)}: at most 256 letters, digits, spaces and _.:/=+-@` });
const tags = z.record(z.string(), tagValue).superRefine((record, ctx) => {
  for (const key of Object.keys(record)) {
    if (!TAG_KEY.test(key)) {
      ctx.addIssue({ code: 'custom', path: [key], input: key, message: `invalid tag key ${show(key)}: 1-128 letters, digits, spaces and _.:/=+-@, not starting with aws: or kubedos: (reserved)` });
    }
  }
});

const ADDRESSES = ['private', 'public'] as const;

const schema = z
  .strictObject({
    type: z.literal('aws'),
    region: region.describe('AWS region, e.g. eu-west-1 (AMIs and instances are regional)'),
    profile: profileName
      .optional()
      .describe('Shared config profile (~/.aws/config: keys, SSO, credential_process, role chains) the cloud worker uses; default: the SDK standard chain (AWS_* variables, AWS_PROFILE, SSO, the instance role)'),
    roleArn: roleArn.optional().describe('IAM role to assume with those credentials (sts:AssumeRole, refreshed automatically)'),
    subnet: subnetId.describe('Subnet the instances run in; its VPC holds the security group'),
    securityGroups: z.array(securityGroupId).min(1).max(5).superRefine(unique<string>('security group')).optional().describe('Existing security groups for the instances'),
    managedSecurityGroup: z
      .strictObject({
        allowFrom: z.array(cidr).min(1).max(50).superRefine(unique<string>('CIDR')).describe('IPv4 CIDRs allowed to reach the ports (the cloud worker\'s, for health checks)'),
        ports: z.array(z.int().min(1).max(65_535)).min(1).max(20).superRefine(unique<number>('port')).default([22]).describe('TCP ports opened: the fleets\' health-check ports'),
      })
      .optional()
      .describe('Instead of securityGroups: one group KubeDos creates and owns in the subnet\'s VPC, opening only these ports to these CIDRs'),
    instanceType: instanceType.default('t3.small').describe('EC2 instance type; a Nitro type (the image boots with UEFI, NVMe and ENA)'),
    address: z.enum(ADDRESSES).default('private').describe('Which address health checks and `kubedos status` use: the private IPv4 (a worker in the VPC) or the public one'),
    importBucket: bucketName.describe('S3 bucket (in the same region) the ami artifact is uploaded to for ImportSnapshot; KubeDos removes its object once the AMI exists'),
    importPrefix: keyPrefix.default('kubedos-imports/').describe('Key prefix of the uploads in importBucket'),
    importRole: roleName.default('vmimport').describe('The VM Import service role (AWS\'s required name is vmimport unless you made another)'),
    tags: tags.default({}).describe('Tags added to everything KubeDos creates (instances, volumes, AMIs, snapshots, import tasks, the security group)'),
  })
  .superRefine(
    ...objectRule((t) =>
      (t.securityGroups === undefined) === (t.managedSecurityGroup === undefined)
        ? { message: 'set exactly one of securityGroups (existing groups) and managedSecurityGroup (one KubeDos creates and owns)' }
        : undefined,
    ),
  )
  .superRefine(
    ...objectRule((t) => {
      const count = Object.keys((t.tags as Record<string, string> | undefined) ?? {}).length;
      // KubeDos adds at most 14 tags of its own; AWS allows 50 per resource.
      return count > 36 ? { message: `${count} tags, but AWS allows 50 per resource and KubeDos adds up to 14: keep tags to 36`, path: ['tags'] } : undefined;
    }),
  )
  .describe('AWS EC2');

/** A parsed `aws` target. */
export type AwsTargetSpec = DeepReadonly<z.output<typeof schema>>;

export const aws = defineTarget({
  type: 'aws',
  description: 'AWS EC2: the ami artifact imported once per digest and region (S3, ImportSnapshot, RegisterImage), instances with identity from IMDSv2',
  accepts: ['ami'],
  pool: 'cloud',
  // The SDK for JavaScript only: no aws CLI.
  tools: [],
  schema,
  load: async (): Promise<DriverFactory<AwsTargetSpec>> => {
    const { AwsDriver } = await import('./driver');
    return (name, spec, env) => new AwsDriver(name, spec, env);
  },
});
