/**
 * Prints what deploy-time identity costs at boot on AWS, under TCG on this machine, for the two
 * ways an image can read it (test/support/ec2-boot.ts boots the ami artifact like a Nitro
 * instance: UEFI, NVMe, SMBIOS "Amazon EC2", an IMDSv2 stand-in at 169.254.169.254):
 *
 *   1. the image's own EC2 reader (the shared test image, as the aws target ships it);
 *   2. Debian's cloud-init with only the Ec2 datasource (the same plan plus cloud-init; the
 *      KubeDos EC2 reader steps aside where cloud-init is installed, so cloud-init alone applies
 *      the identity).
 *
 * For each: wall time from QEMU's start to `kubedos: ready`, and to the identity being applied
 * (the reader's line; cloud-init's own "finished" line), plus the machine's load average. Each
 * image is built once (the second one needs its own rootfs layer: a few minutes cold).
 *   npx ts-node --transpile-only bench/aws-boot.ts [runs=1]
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import type { BuildPlan } from '../src/foundry';
import { userDataOf } from '../src/targets/aws/driver';
import { generateIdentity } from '../src/targets/identity';
import { bootLikeEc2, EC2_BOOT_MARKS } from '../test/support/ec2-boot';
import { builtImage, TEST_PLAN } from '../test/support/images';

const CLOUD_INIT_PLAN: BuildPlan = {
  ...TEST_PLAN,
  base: { ...TEST_PLAN.base, packages: [...TEST_PLAN.base.packages, 'cloud-init', 'isc-dhcp-client'] },
  image: {
    ...TEST_PLAN.image,
    files: [
      ...TEST_PLAN.image.files,
      { path: '/etc/cloud/cloud.cfg.d/90-kubedos.cfg', content: '# Only the Ec2 datasource (IMDSv2).\ndatasource_list: [ Ec2, None ]\n', mode: 0o644, owner: 'root:root' },
    ],
  },
  formats: ['ami'],
};

const load = () => os.loadavg().map((l) => l.toFixed(2)).join(' ');

async function once(variant: 'ec2-reader' | 'cloud-init', ami: string, dir: string): Promise<Record<string, number | string>> {
  const identity = generateIdentity(`bench-${variant}`);
  const instanceId = `i-${randomBytes(9).toString('hex').slice(0, 17)}`;
  const userData = Buffer.from(userDataOf({ nodeId: `bench-${variant}`, identity, authorizedKeys: [] }), 'base64').toString('utf8');
  const marks = {
    ...EC2_BOOT_MARKS(identity.hostname),
    cloudInitLocal: /Cloud-init v\. \S+ running 'init-local'/,
    cloudInitFinished: /Cloud-init v\. \S+ finished at/,
  };
  const before = load();
  const r = await bootLikeEc2({
    disk: { file: ami, format: 'vmdk' },
    imds: {
      'meta-data': { 'instance-id': instanceId, 'local-ipv4': '169.254.0.15', 'ami-id': 'ami-0123456789abcdef0', hostname: 'ip-169-254-0-15.eu-west-1.compute.internal', 'instance-type': 't3.small', placement: { 'availability-zone': 'eu-west-1a', region: 'eu-west-1' } },
      'user-data': userData,
      dynamic: { 'instance-identity': { document: JSON.stringify({ accountId: '123456789012', architecture: 'x86_64', availabilityZone: 'eu-west-1a', imageId: 'ami-0123456789abcdef0', instanceId, instanceType: 't3.small', privateIp: '169.254.0.15', region: 'eu-west-1', version: '2017-09-30' }) } },
    },
    dir,
    marks,
    until: 'ready',
    timeoutMs: 900_000,
  });
  const keyApplied = (r.console.match(/kubedos: hostkey .*/g) ?? []).some((l) => l.includes(identity.hostKeyFingerprint)) || r.console.includes(identity.hostKeyFingerprint);
  const upSeconds = /Cloud-init v\. \S+ finished at .*Up ([\d.]+) seconds/.exec(r.console)?.[1];
  const localUp = /Cloud-init v\. \S+ running 'init-local' at .*Up ([\d.]+) seconds/.exec(r.console)?.[1];
  if (r.seen.ready === undefined) console.error(r.console.slice(-6000));
  return {
    variant,
    readyMs: r.seen.ready ?? 'never',
    identityMs: (variant === 'ec2-reader' ? r.seen.ec2Applied : r.seen.cloudInitFinished) ?? 'never',
    ...(variant === 'ec2-reader' ? { readerMs: r.seen.ec2Applied !== undefined && r.seen.ec2Reader !== undefined ? r.seen.ec2Applied - r.seen.ec2Reader : 'never' } : {}),
    ...(variant === 'cloud-init' ? { cloudInitUptimeSpanS: localUp && upSeconds ? (Number(upSeconds) - Number(localUp)).toFixed(1) : 'unknown' } : {}),
    foundryKeyInstalled: String(keyApplied),
    imdsRequests: r.requests.length,
    load: `${before} → ${load()}`,
  };
}

async function main(): Promise<void> {
  const runs = Number(process.argv[2] ?? 1);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-bench-aws-'));
  try {
    const reader = await builtImage();
    const cloudInit = await builtImage(CLOUD_INIT_PLAN);
    if (cloudInit.result) console.error(`cloud-init variant built in ${cloudInit.result.totalMs} ms (mmdebstrap: ${cloudInit.result.ranMmdebstrap})`);
    const rows = [];
    for (let i = 0; i < runs; i++) {
      rows.push(await once('ec2-reader', reader.artifacts.ami!, dir));
      rows.push(await once('cloud-init', cloudInit.artifacts.ami!, dir));
    }
    for (const row of rows) console.log(JSON.stringify(row));
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
