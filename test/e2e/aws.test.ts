/**
 * The aws target against moto (a real AWS emulator, started on loopback) for S3 and EC2, with a
 * STAND-IN in front of moto's EC2 endpoint for what moto does not do (test/support/aws-standin):
 * ImportSnapshot / DescribeImportSnapshotTasks answered with recorded AWS responses (the snapshot
 * of a completed import is then created in moto, so RegisterImage and the rest run against moto),
 * RunInstances' ClientToken idempotency, and the console of a "booted" instance (the image's real
 * EC2 reader run against an IMDS stand-in serving what moto holds for that instance). The
 * artifact is the shared test image's `ami` (test/support/images.ts). The SDK finds the endpoints
 * through the standard AWS_ENDPOINT_URL_* variables, as a user's would.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import {
  AuthorizeSecurityGroupIngressCommand,
  DescribeImagesCommand,
  DescribeInstanceAttributeCommand,
  DescribeInstancesCommand,
  DescribeSecurityGroupsCommand,
  DescribeSnapshotsCommand,
  DescribeSubnetsCommand,
  DescribeVolumesCommand,
  EC2Client,
  RunInstancesCommand,
  type Filter,
} from '@aws-sdk/client-ec2';
import { CreateBucketCommand, HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type { Worker } from '@temporalio/worker';
import { AwsCredentialsError, AwsImportFailedError, AwsInvalidRequestError, AwsUnavailableError, CancelledError } from '../../src/errors';
import { stringify } from 'yaml';
import { pruneFleetImages, renderPrune } from '../../src/cli/prune-images';
import { loadSpec, parseSpec } from '../../src/platform';
import { aws, type AwsTargetSpec } from '../../src/targets/aws';
import { AwsDriver, runToken } from '../../src/targets/aws/driver';
import { importToken } from '../../src/targets/aws/import';
import type { CreateNodeRequest, DriverContext, ImageSource, NodeLabels, PreparedImage } from '../../src/targets/driver';
import { generateIdentity, publicPart } from '../../src/targets/identity';
import { renderNocloud } from '../../src/targets/nocloud';
import { createDriver } from '../../src/targets';
import { deployUpdate, fleetWorkflowId, scaleUpdate, teardownSignal, type FleetInput } from '../../workflows/fleet-api';
import { startEc2Standin, startMoto, TEST_CREDENTIALS, type Ec2Standin, type Moto } from '../support/aws-standin';
import { UNSUPPORTED_VMDK } from '../support/aws-standin/recorded';
import { readyCount, waitForStatus } from '../support/fleet';
import { builtImage, type BuiltImage } from '../support/images';
import { connectTestEnv, testPoolWorker, type TestEnv } from '../support/temporal';

jest.setTimeout(10 * 60_000);

const run = promisify(execFile);
const REGION = 'eu-west-1';
const BUCKET = `kubedos-imports-${randomUUID().slice(0, 8)}`;
const ROOT = path.resolve(__dirname, '..', '..');
const credentials = { accessKeyId: TEST_CREDENTIALS.AWS_ACCESS_KEY_ID, secretAccessKey: TEST_CREDENTIALS.AWS_SECRET_ACCESS_KEY };

let tmp: string;
let img: BuiltImage;
let moto: Moto;
let standin: Ec2Standin;
/** The test's own view of moto (not through the stand-in). */
let ec2: EC2Client;
let s3: S3Client;
let subnet: string;
let vpc: string;
let artifact: NonNullable<ImageSource['artifact']>;
const drivers: AwsDriver[] = [];
const savedEnv = { ...process.env };

function spec(overrides: Record<string, unknown> = {}): AwsTargetSpec {
  return aws.schema.parse({ type: 'aws', region: REGION, subnet, securityGroups: [defaultGroup], importBucket: BUCKET, tags: { team: 'platform' }, ...overrides }) as AwsTargetSpec;
}
let defaultGroup: string;

function driver(name = 'aws-test', overrides: Record<string, unknown> = {}, options: ConstructorParameters<typeof AwsDriver>[3] = {}): AwsDriver {
  const d = new AwsDriver(name, spec(overrides), { stateDir: path.join(tmp, 'state') }, { import: { pollIntervalMs: 100, ...options.import }, ...options });
  drivers.push(d);
  return d;
}

async function describe_(filters: Filter[]) {
  const res = await ec2.send(new DescribeInstancesCommand({ Filters: filters }));
  return (res.Reservations ?? []).flatMap((r) => r.Instances ?? []);
}
const liveOf = (tag: string, value: string) => describe_([{ Name: `tag:${tag}`, Values: [value] }, { Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped'] }]);
const tagsOf = (tags: { Key?: string; Value?: string }[] | undefined) => Object.fromEntries((tags ?? []).map((t) => [t.Key!, t.Value ?? '']));

/** A small streamOptimized VMDK of its own content (its own digest: its own import). */
async function smallVmdk(name: string): Promise<NonNullable<ImageSource['artifact']>> {
  const raw = path.join(tmp, `${name}.raw`);
  const file = path.join(tmp, `${name}.vmdk`);
  await fs.writeFile(raw, Buffer.concat([Buffer.from(`${name}\n`), Buffer.alloc(8 * 1024 * 1024 - name.length - 1)]));
  await run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', raw, file]);
  const bytes = await fs.readFile(file);
  return { format: 'ami', sha256: createHash('sha256').update(bytes).digest('hex'), size: bytes.length, path: file };
}

function beats(): { ctx: DriverContext; seen: Array<{ step: string; resume?: Record<string, unknown> }> } {
  const seen: Array<{ step: string; resume?: Record<string, unknown> }> = [];
  return { seen, ctx: { progress: (d) => seen.push(d) } };
}

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-aws-'));
  [img, moto] = await Promise.all([builtImage(), startMoto()]);
  standin = await startEc2Standin({ moto: moto.url, region: REGION, scratch: path.join(tmp, 'boots'), bootMs: 500 });
  // What a user's worker has: credentials and region from the standard chain, endpoints from the
  // standard variables; nothing from this machine's ~/.aws, and never the real IMDS.
  Object.assign(process.env, {
    ...TEST_CREDENTIALS,
    AWS_ENDPOINT_URL_EC2: standin.url,
    AWS_ENDPOINT_URL_S3: moto.url,
    // STS through the stand-in too (forwarded to moto), so the test sees AssumeRole.
    AWS_ENDPOINT_URL_STS: standin.url,
    AWS_CONFIG_FILE: path.join(tmp, 'no-aws-config'),
    AWS_SHARED_CREDENTIALS_FILE: path.join(tmp, 'no-aws-credentials'),
    AWS_EC2_METADATA_DISABLED: 'true',
  });
  delete process.env.AWS_PROFILE;
  delete process.env.AWS_SESSION_TOKEN;
  ec2 = new EC2Client({ region: REGION, endpoint: moto.url, credentials });
  s3 = new S3Client({ region: REGION, endpoint: moto.url, forcePathStyle: true, credentials });
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET, CreateBucketConfiguration: { LocationConstraint: REGION } }));
  const subnets = (await ec2.send(new DescribeSubnetsCommand({}))).Subnets!;
  subnet = subnets[0]!.SubnetId!;
  vpc = subnets[0]!.VpcId!;
  defaultGroup = (await ec2.send(new DescribeSecurityGroupsCommand({ Filters: [{ Name: 'group-name', Values: ['default'] }, { Name: 'vpc-id', Values: [vpc] }] }))).SecurityGroups![0]!.GroupId!;
  const entry = img.manifest.artifacts.find((a) => a.format === 'ami')!;
  artifact = { format: 'ami', sha256: entry.sha256, size: entry.size, path: img.artifacts.ami! };
});

afterAll(async () => {
  for (const d of drivers) await d.close().catch(() => undefined);
  ec2?.destroy();
  s3?.destroy();
  await standin?.stop();
  await moto?.stop();
  for (const k of Object.keys(process.env)) if (!(k in savedEnv)) delete process.env[k];
  Object.assign(process.env, savedEnv);
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

test('examples/aws/kubedos.yaml is a valid spec; the registry builds the aws driver from it', async () => {
  const parsed = await loadSpec(path.join(ROOT, 'examples', 'aws', 'kubedos.yaml'));
  const targets = Object.values(parsed.targets).filter((t) => t.type === 'aws');
  expect(targets.length).toBeGreaterThan(0);
  const d = await createDriver('example', targets[0]!);
  expect(d).toBeInstanceOf(AwsDriver);
  await d.close?.();
  // A Xen type cannot boot the UEFI ami artifact: refused at validate.
  expect(() => spec({ instanceType: 't2.micro' })).toThrow(/Xen instance: the ami artifact boots with UEFI/);
  expect(() => spec({ managedSecurityGroup: { allowFrom: ['10.0.0.0/8'] } })).toThrow(/exactly one of securityGroups/);
});

let prepared: PreparedImage;
const PUBLICATION = 'e'.repeat(64);

test('prepare uploads the ami artifact, imports it (stand-in), registers a UEFI/ENA/x86_64 AMI in moto tagged with its digests; a second prepare finds it and does nothing', async () => {
  standin.setImportScript({ kind: 'complete', stepMs: 150 });
  const source: ImageSource = { name: 'kubedos-test', digest: PUBLICATION, artifact };
  const { ctx, seen } = beats();
  const started = Date.now();
  prepared = await driver().prepare(source, ctx);
  console.log(`aws prepare of the ${(artifact.size / 2 ** 20).toFixed(0)} MiB ami artifact against moto + import stand-in: ${Date.now() - started} ms`);
  expect(prepared).toEqual({ digest: PUBLICATION, location: expect.stringMatching(/^ami-[0-9a-f]+$/) });

  // What ImportSnapshot was sent (checked by the stand-in as EC2 checks it, and here).
  const [call] = standin.calls('ImportSnapshot');
  const key = `kubedos-imports/${artifact.sha256}.vmdk`;
  expect(call!.params).toMatchObject({
    'DiskContainer.Format': 'VMDK',
    'DiskContainer.UserBucket.S3Bucket': BUCKET,
    'DiskContainer.UserBucket.S3Key': key,
    RoleName: 'vmimport',
    'TagSpecification.1.ResourceType': 'import-snapshot-task',
  });
  expect(call!.params.ClientToken).toMatch(/^kubedos-[0-9a-f]{48}$/);
  const task = standin.tasks().find((t) => t.detail.key === key)!;
  expect(task.detail.status).toBe('completed');
  expect(task.tags).toMatchObject({ 'kubedos:managed': 'true', 'kubedos:target': 'aws-test', 'kubedos:artifact-sha256': artifact.sha256, team: 'platform' });
  // Polled through AWS's states, each heartbeat carrying the task id to resume from.
  expect(seen.map((b) => b.step)).toEqual(expect.arrayContaining([expect.stringMatching(/downloading\/converting/), expect.stringMatching(/^uploading to s3:/)]));
  expect(seen.filter((b) => /^import /.test(b.step)).every((b) => (b.resume?.awsImport as { importTaskId?: string })?.importTaskId === task.id)).toBe(true);

  // RegisterImage carried what the artifact needs (moto ignores these, so they are checked as sent).
  const [register] = standin.calls('RegisterImage');
  expect(register!.params).toMatchObject({
    Architecture: 'x86_64',
    BootMode: 'uefi',
    EnaSupport: 'true',
    VirtualizationType: 'hvm',
    RootDeviceName: '/dev/xvda',
    ImdsSupport: 'v2.0',
    'BlockDeviceMapping.1.DeviceName': '/dev/xvda',
    'BlockDeviceMapping.1.Ebs.SnapshotId': task.detail.snapshotId,
    'BlockDeviceMapping.1.Ebs.DeleteOnTermination': 'true',
  });
  // In moto: the AMI and its snapshot, tagged; the upload is gone from the bucket.
  const image = (await ec2.send(new DescribeImagesCommand({ ImageIds: [prepared.location] }))).Images![0]!;
  expect(tagsOf(image.Tags)).toMatchObject({ 'kubedos:managed': 'true', 'kubedos:target': 'aws-test', 'kubedos:artifact-sha256': artifact.sha256, 'kubedos:image-digest': PUBLICATION, team: 'platform' });
  const snapshot = (await ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [task.detail.snapshotId!] }))).Snapshots![0]!;
  expect(tagsOf(snapshot.Tags)).toMatchObject({ 'kubedos:artifact-sha256': artifact.sha256 });
  await expect(s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }))).rejects.toMatchObject({ name: 'NotFound' });

  // Again, from a fresh driver (another worker): found by its digest tag, nothing else sent.
  const before = standin.requests.length;
  expect(await driver().prepare(source, {})).toEqual(prepared);
  expect(standin.requests.slice(before).map((r) => r.action)).toEqual(['DescribeImages']);
});

test('an interrupted prepare resumes the same import task: from its heartbeat details, or else by its client token; never a second import', async () => {
  const small = await smallVmdk('resume');
  const source: ImageSource = { name: 'resume', digest: 'f'.repeat(64), artifact: small };
  standin.setImportScript({ kind: 'hold' });
  const attempt = async (resumed?: Record<string, unknown>) => {
    const abort = new AbortController();
    const seen: Array<{ step: string; resume?: Record<string, unknown> }> = [];
    const ctx: DriverContext = { signal: abort.signal, previous: resumed ? { step: 'polling', resume: resumed } : undefined, progress: (d) => seen.push(d) };
    const done = driver().prepare(source, ctx);
    return { abort, seen, done };
  };
  const imports = () => standin.calls('ImportSnapshot').filter((c) => c.params['DiskContainer.UserBucket.S3Key']!.includes(small.sha256));
  const polling = (seen: Array<{ step: string }>) => seen.filter((b) => /downloading\/converting/.test(b.step)).length >= 2;

  // 1. Killed while polling (cancelled here).
  const first = await attempt();
  while (!polling(first.seen)) await sleep(50);
  first.abort.abort();
  await expect(first.done).rejects.toBeInstanceOf(CancelledError);
  expect(imports()).toHaveLength(1);
  const taskId = (first.seen.at(-1)!.resume!.awsImport as { importTaskId: string }).importTaskId;

  // 2. Its heartbeat details lost: the object is found in the bucket (not sent again) and the
  //    same ClientToken gets the same task back from EC2.
  const second = await attempt();
  while (!polling(second.seen)) await sleep(50);
  second.abort.abort();
  await expect(second.done).rejects.toBeInstanceOf(CancelledError);
  expect(imports()).toHaveLength(2);
  expect(imports()[1]!.params.ClientToken).toBe(imports()[0]!.params.ClientToken);
  expect(second.seen.some((b) => /^uploading/.test(b.step))).toBe(false);
  expect((second.seen.at(-1)!.resume!.awsImport as { importTaskId: string }).importTaskId).toBe(taskId);

  // 3. With the heartbeat details of the last attempt: polls that task straight away.
  const before = standin.requests.length;
  const third = await attempt(second.seen.at(-1)!.resume);
  while (!polling(third.seen)) await sleep(50);
  standin.releaseImports();
  const done = await third.done;
  expect(done.location).toMatch(/^ami-/);
  expect(imports()).toHaveLength(2);
  const after = standin.requests.slice(before).map((r) => `${r.action}${r.params['ImportTaskId.1'] ? ` ${r.params['ImportTaskId.1']}` : ''}`);
  expect(after.filter((a) => /Import/.test(a))[0]).toBe(`DescribeImportSnapshotTasks ${taskId}`);
  expect(standin.tasks().filter((t) => t.detail.key.includes(small.sha256))).toHaveLength(1);
  expect(importToken(REGION, small.sha256, 'x')).not.toBe(importToken(REGION, small.sha256, 'y'));
});

test('a failed import is reported with AWS\'s status message and is not retried; a stalled one too; a missing role names importRole', async () => {
  // Not a VMDK at all: the stand-in refuses it as VM Import does.
  const junk = path.join(tmp, 'junk.ami.vmdk');
  await fs.writeFile(junk, Buffer.alloc(6 * 1024 * 1024, 7));
  const bytes = await fs.readFile(junk);
  const bad: ImageSource = { name: 'junk', digest: '1'.repeat(64), artifact: { format: 'ami', sha256: createHash('sha256').update(bytes).digest('hex'), size: bytes.length, path: junk } };
  standin.setImportScript({ kind: 'complete', stepMs: 50 });
  const failed = await driver().prepare(bad, {}).catch((e: unknown) => e);
  expect(failed).toBeInstanceOf(AwsImportFailedError);
  expect((failed as AwsImportFailedError).message).toContain(UNSUPPORTED_VMDK);
  expect((failed as AwsImportFailedError).retryable).toBe(false);
  await expect(s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `kubedos-imports/${bad.artifact!.sha256}.vmdk` }))).rejects.toMatchObject({ name: 'NotFound' });

  const stalled = await smallVmdk('stalled');
  standin.setImportScript({ kind: 'stall' });
  const stuck = await driver('aws-test', {}, { import: { pollIntervalMs: 100, stallTimeoutMs: 1_000 } }).prepare({ name: 'stalled', digest: '2'.repeat(64), artifact: stalled }, {}).catch((e: unknown) => e);
  expect(stuck).toBeInstanceOf(AwsImportFailedError);
  expect((stuck as Error).message).toMatch(/stalled \(no progress for .*\): active 3%: pending/);
  expect((stuck as AwsImportFailedError).hint).toMatch(/next deploy resumes polling it/);

  const norole = await smallVmdk('norole');
  standin.setImportScript({ kind: 'complete', stepMs: 50 });
  const refused = await driver('aws-test', { importRole: 'kubedos-import' }).prepare({ name: 'norole', digest: '3'.repeat(64), artifact: norole }, {}).catch((e: unknown) => e);
  expect(refused).toBeInstanceOf(AwsInvalidRequestError);
  expect((refused as Error).message).toMatch(/ImportSnapshot failed: InvalidParameter: The service role kubedos-import provided does not exist/);
  expect((refused as AwsInvalidRequestError).hint).toMatch(/importRole/);
  expect((refused as AwsInvalidRequestError).retryable).toBe(false);
});

function labelsOf(fleet: string, overrides: Partial<NodeLabels> = {}): NodeLabels {
  return { platform: 'p-drv', fleet, generation: 1, image: 'kubedos-test', imageDigest: PUBLICATION, ...overrides };
}
function request(nodeId: string, hostname: string, labels: NodeLabels): CreateNodeRequest {
  return { nodeId, labels, image: prepared, identity: generateIdentity(hostname), authorizedKeys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHfake kubedos-test'] };
}

test('create launches one instance per node (a retried RunInstances does not double, nor a retried create); readiness from its console; list and destroy by tag', async () => {
  const d = driver();
  const r = request('p-drv-web-0001', 'web-1', labelsOf('web'));
  // The first answer is lost on the way back: the SDK retries with the same ClientToken.
  standin.dropNextRunInstancesResponse();
  const identity = await d.create(r, {});
  expect(identity).toEqual(publicPart(r.identity));
  const runs = standin.calls('RunInstances');
  expect(runs).toHaveLength(2);
  expect(runs[1]!.params.ClientToken).toBe(runs[0]!.params.ClientToken);
  expect(runs[0]!.params.ClientToken).toBe(runToken(r.nodeId, r.identity.machineId));
  // A retried create activity (a new identity generated) gets the node's real one, launches nothing.
  expect(await d.create({ ...r, identity: generateIdentity('web-1') }, {})).toEqual(publicPart(r.identity));
  expect(standin.calls('RunInstances')).toHaveLength(2);

  const [instance, ...others] = await liveOf('kubedos:node-id', r.nodeId);
  expect(others).toEqual([]);
  expect(instance!.ImageId).toBe(prepared.location);
  expect(instance!.SubnetId).toBe(subnet);
  expect(instance!.MetadataOptions).toMatchObject({ HttpTokens: 'required', HttpPutResponseHopLimit: 1, HttpEndpoint: 'enabled' });
  expect(tagsOf(instance!.Tags)).toMatchObject({
    Name: r.nodeId, team: 'platform', 'kubedos:managed': 'true', 'kubedos:target': 'aws-test', 'kubedos:node-id': r.nodeId, 'kubedos:platform': 'p-drv', 'kubedos:fleet': 'web',
    'kubedos:generation': '1', 'kubedos:image-digest': PUBLICATION, 'kubedos:hostname': 'web-1', 'kubedos:host-key': r.identity.hostKeyPublic, 'kubedos:host-key-fingerprint': r.identity.hostKeyFingerprint,
  });
  const userData = await ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: instance!.InstanceId, Attribute: 'userData' }));
  expect(Buffer.from(userData.UserData!.Value!, 'base64').toString('utf8')).toBe(renderNocloud({ instanceId: r.nodeId, identity: r.identity, authorizedKeys: r.authorizedKeys })['user-data']);
  const volumes = (await ec2.send(new DescribeVolumesCommand({ Filters: [{ Name: 'tag:kubedos:node-id', Values: [r.nodeId] }] }))).Volumes!;
  expect(volumes).toHaveLength(1);

  await d.start(r.nodeId, {});
  expect(standin.calls('StartInstances')).toHaveLength(0); // RunInstances started it
  let ready = false;
  for (let i = 0; i < 100 && !ready; i++) {
    ready = await d.readiness(r.nodeId, {});
    if (!ready) await sleep(100);
  }
  expect(ready).toBe(true);
  // The node's first boot read the driver's user-data over IMDSv2 and installed the pinned key.
  const consoleLog = standin.consoleOf(instance!.InstanceId!);
  expect(consoleLog).toContain(`kubedos: ec2: instance ${instance!.InstanceId} at ${instance!.PrivateIpAddress}: read meta-data and user-data`);
  expect(consoleLog).toContain(`kubedos: hostkey 256 ${r.identity.hostKeyFingerprint} root@web-1 (ED25519)`);
  expect(consoleLog).toContain(`kubedos: nocloud: machine-id ${r.identity.machineId}`);
  expect(await d.address(r.nodeId, {})).toEqual({ host: instance!.PrivateIpAddress, ports: { 22: 22 } });
  expect(await d.list({ platform: 'p-drv' }, {})).toEqual([{ nodeId: r.nodeId, labels: r.labels, identity: publicPart(r.identity), running: true }]);

  // An instance that wears the node id but not KubeDos's ownership tags is not ours: never listed or terminated.
  const foreign = await ec2.send(new RunInstancesCommand({ ImageId: prepared.location, MinCount: 1, MaxCount: 1, InstanceType: 't3.micro', SubnetId: subnet, TagSpecifications: [{ ResourceType: 'instance', Tags: [{ Key: 'kubedos:node-id', Value: r.nodeId }, { Key: 'kubedos:target', Value: 'aws-test' }] }] }));
  await d.destroy(r.nodeId, {});
  expect(await d.list({}, {})).toEqual([]);
  expect((await liveOf('kubedos:node-id', r.nodeId)).map((i) => i.InstanceId)).toEqual([foreign.Instances![0]!.InstanceId]);
  expect((await ec2.send(new DescribeVolumesCommand({ Filters: [{ Name: 'tag:kubedos:node-id', Values: [r.nodeId] }] }))).Volumes).toEqual([]);
  const terminations = standin.calls('TerminateInstances').length;
  await d.destroy(r.nodeId, {}); // absent: not an error, nothing sent
  expect(standin.calls('TerminateInstances')).toHaveLength(terminations);
  await expect(d.readiness(r.nodeId, {})).rejects.toThrow(/stopped running before it reported ready|has no such node/);
});

test('throttling is retried with backoff; invalid parameters are not and name the field; a role is assumed; refused credentials name the variable or the profile', async () => {
  const d = driver();
  standin.throttle('DescribeInstances', 2);
  expect(await d.list({ platform: 'nobody' }, {})).toEqual([]);
  expect(standin.calls('DescribeInstances').slice(-3).map((c) => c.status)).toEqual([503, 503, 200]);
  standin.throttle('DescribeInstances', 20);
  const throttled = await d.list({}, {}).catch((e: unknown) => e);
  standin.throttle('DescribeInstances', 0);
  expect(throttled).toBeInstanceOf(AwsUnavailableError);
  expect((throttled as AwsUnavailableError).retryable).toBe(true);
  expect((throttled as Error).message).toMatch(/RequestLimitExceeded/);

  const noSubnet = await driver('aws-test', { subnet: 'subnet-0000000000000000a' }).create(request('p-drv-x-0001', 'x-1', labelsOf('x')), {}).catch((e: unknown) => e);
  expect(noSubnet).toBeInstanceOf(AwsInvalidRequestError);
  expect((noSubnet as AwsInvalidRequestError).retryable).toBe(false);
  expect((noSubnet as AwsInvalidRequestError).hint).toMatch(/subnet/);

  // A role to assume: the driver's calls run with the role's credentials from STS.
  const roleArn = 'arn:aws:iam::123456789012:role/kubedos-deployer';
  expect(await driver('aws-role', { roleArn }).list({}, {})).toEqual([]);
  expect(standin.calls('AssumeRole').map((c) => [c.params.RoleArn, c.params.RoleSessionName, c.status])).toEqual([[roleArn, 'kubedos-aws-role', 200]]);

  // A moto with IAM authentication on knows none of these keys.
  const locked = await startMoto({ auth: true });
  try {
    process.env.AWS_ENDPOINT_URL_EC2 = locked.url;
    const fromEnv = await driver('aws-locked').list({}, {}).catch((e: unknown) => e);
    expect(fromEnv).toBeInstanceOf(AwsCredentialsError);
    expect((fromEnv as AwsCredentialsError).retryable).toBe(false);
    expect((fromEnv as Error).message).toMatch(/credentials from AWS_ACCESS_KEY_ID \/ AWS_SECRET_ACCESS_KEY: AuthFailure/);
    await fs.writeFile(path.join(tmp, 'aws-config'), '[profile kubedos-deployer]\nregion = eu-west-1\n');
    await fs.writeFile(path.join(tmp, 'aws-credentials'), '[kubedos-deployer]\naws_access_key_id = AKIAWRONGWRONGWRONG1\naws_secret_access_key = wrong\n');
    Object.assign(process.env, { AWS_CONFIG_FILE: path.join(tmp, 'aws-config'), AWS_SHARED_CREDENTIALS_FILE: path.join(tmp, 'aws-credentials') });
    const fromProfile = await driver('aws-locked', { profile: 'kubedos-deployer' }).list({}, {}).catch((e: unknown) => e);
    expect(fromProfile).toBeInstanceOf(AwsCredentialsError);
    expect((fromProfile as Error).message).toMatch(/credentials from profile kubedos-deployer/);
    expect((fromProfile as AwsCredentialsError).hint).toMatch(/fix profile kubedos-deployer/);
    const missing = await driver('aws-locked', { profile: 'nope' }).list({}, {}).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(AwsCredentialsError);
    expect((missing as Error).message).toMatch(/profile nope/);
  } finally {
    Object.assign(process.env, { AWS_ENDPOINT_URL_EC2: standin.url, AWS_CONFIG_FILE: path.join(tmp, 'no-aws-config'), AWS_SHARED_CREDENTIALS_FILE: path.join(tmp, 'no-aws-credentials') });
    await locked.stop();
  }
});

test('a managed security group: made once in the subnet\'s VPC, owning exactly the given ports and CIDRs; pruned when unused', async () => {
  const managed = { managedSecurityGroup: { allowFrom: ['203.0.113.0/24', '198.51.100.7/32'], ports: [22, 8080] }, securityGroups: undefined };
  const id = await driver('aws-sg', managed).ensureManagedGroup({});
  const rules = async () => {
    const g = (await ec2.send(new DescribeSecurityGroupsCommand({ GroupIds: [id] }))).SecurityGroups![0]!;
    return { vpc: g.VpcId, tags: tagsOf(g.Tags), rules: (g.IpPermissions ?? []).flatMap((p) => (p.IpRanges ?? []).map((r) => `${p.IpProtocol}/${p.FromPort}/${r.CidrIp}`)).sort() };
  };
  const want = ['tcp/22/198.51.100.7/32', 'tcp/22/203.0.113.0/24', 'tcp/8080/198.51.100.7/32', 'tcp/8080/203.0.113.0/24'];
  expect(await rules()).toEqual({ vpc, tags: expect.objectContaining({ 'kubedos:managed': 'true', 'kubedos:target': 'aws-sg', team: 'platform' }), rules: want });
  // Somebody opened RDP to the world on KubeDos's group: the next driver closes it again.
  await ec2.send(new AuthorizeSecurityGroupIngressCommand({ GroupId: id, IpPermissions: [{ IpProtocol: 'tcp', FromPort: 3389, ToPort: 3389, IpRanges: [{ CidrIp: '0.0.0.0/0' }] }] }));
  expect(await driver('aws-sg', managed).ensureManagedGroup({})).toBe(id);
  expect((await rules()).rules).toEqual(want);
  expect(standin.calls('CreateSecurityGroup')).toHaveLength(1);
  expect(await driver('aws-sg', managed).pruneImages({})).toEqual({ removed: [`security group ${id} (kubedos-aws-sg)`], kept: [] });
});

describe('through the fleet workflow (dev server; the cloud worker a process of its own, SIGKILLed during the import poll)', () => {
  let env: TestEnv;
  const workers: Worker[] = [];
  const running: Promise<void>[] = [];
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    env = await connectTestEnv();
  });
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    for (const w of workers) w.shutdown();
    await Promise.allSettled(running);
    await env?.close();
  });

  function cloudWorker(queue: string): Promise<ChildProcess> {
    const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', path.join(ROOT, 'test/support/aws-standin/worker.ts')], {
      cwd: ROOT,
      env: { ...process.env, KUBEDOS_TEST_QUEUE: queue, KUBEDOS_TEST_ARTIFACT: JSON.stringify(artifact), KUBEDOS_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let out = '';
    return new Promise((resolve, reject) => {
      const onData = (d: Buffer) => {
        out += d.toString();
        if (out.includes('worker ready')) resolve(child);
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      child.once('exit', (code) => reject(new Error(`cloud worker exited (${code}): ${out}`)));
    });
  }

  test('a fleet of 3: import resumed by a second worker after the first is killed, deployed, scaled, rolled out and back, torn down; then prune leaves nothing tagged', async () => {
    const id = randomUUID().slice(0, 8);
    const platform = `a${id}`;
    const targetName = `aws-fleet-${id}`;
    const cloudQueue = `t-${id}-cloud`;
    const controlQueue = `t-${id}-control`;
    workers.push(await testPoolWorker(env, 'control', controlQueue));
    running.push(...workers.map((w) => w.run()));
    standin.setImportScript({ kind: 'hold' });
    const first = await cloudWorker(cloudQueue);

    const input: FleetInput = {
      platform,
      fleet: 'web',
      target: { name: targetName, spec: spec() as never },
      deployQueue: cloudQueue,
      artifactFormat: 'ami',
      hostnamePrefix: 'web',
      authorizedKeys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHfake kubedos-test'],
      healthCheck: { type: 'readiness', timeout: 30_000, interval: 250, retries: 0 },
      rollout: { maxSurge: 1, maxUnavailable: 0, failureThreshold: 1, batchSize: 50 },
      image: { name: 'kubedos-test', digest: '9'.repeat(64) },
      replicas: 3,
    };
    const started = Date.now();
    let records = 0;
    const handle = await env.client.workflow.start('fleet', { taskQueue: controlQueue, workflowId: fleetWorkflowId(platform, 'web'), args: [input] });
    const ours = () => standin.tasks().filter((t) => t.tags['kubedos:target'] === targetName);
    // Wait until the first worker polls the task (and its heartbeats, flushed every second, carry the id).
    while (!ours()[0] || standin.calls('DescribeImportSnapshotTasks').filter((c) => c.params['ImportTaskId.1'] === ours()[0]!.id).length < 4) await sleep(200);
    await sleep(1_500);
    first.kill('SIGKILL');
    const killedAt = standin.requests.length;
    const taskId = ours()[0]!.id;
    await cloudWorker(cloudQueue);
    standin.releaseImports();

    try {
      // The retry waits for the prepare activity's heartbeat timeout (2 min) to notice the dead worker.
      const steady = await waitForStatus(handle, (s) => s.phase === 'steady' && readyCount(s) === 3, 5 * 60_000);
      console.log(`aws fleet of 3 (moto + stand-in), worker killed mid-import: deploy → ready in ${Date.now() - started} ms`);
      expect(ours()).toHaveLength(1);
      const afterKill = standin.requests.slice(killedAt).filter((r) => /ImportSnapshot/.test(r.action));
      expect(afterKill[0]).toMatchObject({ action: 'DescribeImportSnapshotTasks', params: expect.objectContaining({ 'ImportTaskId.1': taskId }) });
      expect(afterKill.filter((r) => r.action === 'ImportSnapshot')).toEqual([]);
      const g1 = await new AwsDriver(targetName, spec(), { stateDir: tmp }).list({ platform }, {});
      expect(g1.map((n) => [n.nodeId, n.running, n.labels.generation, n.identity])).toEqual(steady.nodes.map((n) => [n.nodeId, true, 1, n.identity]).sort());

      // Scaled up and down.
      await handle.executeUpdate(scaleUpdate, { args: [4] });
      await waitForStatus(handle, (s) => s.phase === 'steady' && readyCount(s) === 4, 120_000);
      await handle.executeUpdate(scaleUpdate, { args: [3] });
      const back3 = await waitForStatus(handle, (s) => s.phase === 'steady' && readyCount(s) === 3 && s.nodes.length === 3, 120_000);
      expect((await liveOf('kubedos:platform', platform)).length).toBe(3);

      // A new image whose first boot fails: the rollout rolls back, generation 1 untouched.
      standin.breakImage('8'.repeat(64));
      await handle.executeUpdate(deployUpdate, { args: [{ image: { name: 'kubedos-test', digest: '8'.repeat(64) } }] });
      const rolledBack = await waitForStatus(handle, (s) => s.rollouts.length === 2 && s.phase === 'steady', 180_000);
      expect(rolledBack.rollouts.map((r) => r.outcome)).toEqual(['completed', 'rolled-back']);
      expect(rolledBack.generation).toBe(1);
      expect(rolledBack.nodes.filter((n) => n.state === 'ready').map((n) => n.nodeId).sort()).toEqual(back3.nodes.map((n) => n.nodeId).sort());
      records = rolledBack.nodes.length; // the failed node's record stays (its instance is gone)
      const live = await liveOf('kubedos:platform', platform);
      expect(live.map((i) => tagsOf(i.Tags)['kubedos:image-digest'])).toEqual(['9', '9', '9'].map((c) => c.repeat(64)));
    } finally {
      await handle.signal(teardownSignal).catch(() => undefined);
    }
    expect(await handle.result()).toEqual({ fleet: 'web', destroyed: records });
    const d = new AwsDriver(targetName, spec(), { stateDir: tmp });
    drivers.push(d);
    expect(await d.list({ platform }, {})).toEqual([]);
    expect(await liveOf('kubedos:platform', platform)).toEqual([]);
    expect((await ec2.send(new DescribeVolumesCommand({ Filters: [{ Name: 'tag:kubedos:platform', Values: [platform] }] }))).Volumes).toEqual([]);

    // kubedos down --prune-images (its module, on the spec a user wrote): the AMI and its snapshot go.
    const userSpec = parseSpec(
      stringify({
        apiVersion: 'kubedos.dev/v1alpha1',
        kind: 'Platform',
        metadata: { name: platform },
        images: { 'kubedos-test': { outputs: ['ami'] } },
        targets: { [targetName]: { type: 'aws', region: REGION, subnet, securityGroups: [defaultGroup], importBucket: BUCKET, tags: { team: 'platform' } } },
        fleets: { web: { image: 'kubedos-test', target: targetName, replicas: 3 } },
      }),
      'kubedos.yaml',
    );
    const pruned = await pruneFleetImages(userSpec, ['web']);
    expect(pruned).toEqual([{ target: targetName, removed: [expect.stringMatching(/^AMI ami-/), expect.stringMatching(/^snapshot snap-/)], kept: [] }]);
    expect(renderPrune(pruned)).toEqual([expect.stringMatching(new RegExp(`^${targetName}: removed AMI ami-`)), expect.stringMatching(new RegExp(`^${targetName}: removed snapshot snap-`))]);
    const owned = [{ Name: 'tag:kubedos:target', Values: [targetName] }];
    expect((await ec2.send(new DescribeImagesCommand({ Owners: ['self'], Filters: owned }))).Images).toEqual([]);
    expect((await ec2.send(new DescribeSnapshotsCommand({ OwnerIds: ['self'], Filters: owned }))).Snapshots).toEqual([]);
    expect((await ec2.send(new DescribeVolumesCommand({ Filters: owned }))).Volumes).toEqual([]);
    expect(await liveOf('kubedos:target', targetName)).toEqual([]);
  });
});
