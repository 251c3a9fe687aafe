/**
 * AWS for the aws target's tests: moto (a real, widely used AWS emulator, `moto_server` from the
 * project's .venv) for S3 and EC2, and in front of moto's EC2 endpoint a small STAND-IN for what
 * moto does not do:
 *
 * - ImportSnapshot / DescribeImportSnapshotTasks (moto: 500 NotImplemented). Answered in EC2's
 *   XML wire format from ./recorded.ts. ImportSnapshot is checked as EC2 checks it: only the
 *   API's parameters (UnknownParameter otherwise), DiskContainer.Format one of VHD/VMDK/RAW, an
 *   S3 bucket and key (the object must exist in moto), TagSpecification of resource type
 *   import-snapshot-task, the role (a configured set), ClientToken idempotency (the same token
 *   returns the same task; other parameters with it are IdempotentParameterMismatch). The task
 *   then walks through AWS's progress states; when it completes, the stand-in reads the VMDK
 *   header from moto's S3 (it must be a streamOptimized VMDK, else the task fails with AWS's
 *   "Unsupported VMDK File Format") and creates the snapshot in moto (CreateVolume of the disk's
 *   size + CreateSnapshot), so RegisterImage and everything after it run against moto for real.
 *   A task can be held, failed or stalled by the test.
 * - RunInstances idempotency by ClientToken (moto launches again): a repeated token returns the
 *   first call's answer, as EC2 does. The test can drop the next answer (the SDK then retries).
 * - GetConsoleOutput of a booted node (moto returns a canned text; nothing boots here): an
 *   instance that has run for `bootMs` "boots" by running the image's real EC2 reader
 *   (src/foundry/ec2-reader.ts) in a scratch root against an IMDS stand-in serving that
 *   instance's id, private IP and user-data as moto holds them; the console is the reader's
 *   output, the fingerprint of the host key it installed, and `kubedos: ready <hostname>` — or,
 *   for an AMI the test marked broken, a first boot that fails.
 * - Fault injection: the next N calls of an action answer RequestLimitExceeded (503).
 *
 * Everything else is forwarded to moto unchanged; every request is recorded (action and
 * parameters) so tests can check what the driver sent, including what moto ignores (RegisterImage's
 * boot mode, ENA and block devices).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, promises as fs } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { CreateSnapshotCommand, CreateVolumeCommand, DescribeInstanceAttributeCommand, DescribeInstancesCommand, DescribeSnapshotsCommand, EC2Client } from '@aws-sdk/client-ec2';
import { GetObjectCommand, HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { freePort } from '../../../src/exec/ports';
import { EC2_READER, EC2_SYS_VENDOR } from '../../../src/foundry/ec2-reader';
import { scratchRoot } from '../scratch-root';
import { describeImportSnapshotTasksResponse, errorResponse, getConsoleOutputResponse, importSnapshotResponse, NO_ACCESS_TO_OBJECT, PROGRESS_STEPS, ROLE_MISSING, UNSUPPORTED_VMDK, type Task } from './recorded';

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '..', '..', '..');
const { answer: imdsAnswer } = require('../imds-standin.cjs') as { answer: (doc: unknown, token: string, method: string, url: string, headers: Record<string, string | undefined>) => { status: number; body: string } };

/** Credentials moto accepts (any, unless started with IAM auth on). */
export const TEST_CREDENTIALS = { AWS_ACCESS_KEY_ID: 'AKIAKUBEDOSTEST00001', AWS_SECRET_ACCESS_KEY: 'kubedos-test-secret-key' };

// ---------------------------------------------------------------------------------------------
// moto

export interface Moto {
  url: string;
  stop(): Promise<void>;
}

/** moto_server on a free loopback port; `auth` turns IAM authentication on (every key unknown). */
export async function startMoto(options: { auth?: boolean } = {}): Promise<Moto> {
  const port = await freePort();
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, LANG: 'C.UTF-8', ...(options.auth ? { INITIAL_NO_AUTH_ACTION_COUNT: '0' } : {}) };
  const child: ChildProcess = spawn(path.join(ROOT, '.venv', 'bin', 'moto_server'), ['-H', '127.0.0.1', '-p', String(port)], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`moto_server exited (${child.exitCode}): ${stderr}`);
    const up = await new Promise<boolean>((resolve) => {
      http.get(`${url}/moto-api/`, (res) => { res.resume(); resolve(res.statusCode === 200); }).on('error', () => resolve(false));
    });
    if (up) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`moto_server did not answer on ${url}: ${stderr}`);
    }
    await sleep(200);
  }
  return {
    url,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(5_000).then(() => child.kill('SIGKILL'))]);
      await exited;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// EC2 query protocol

/** Form parameters of an EC2 query request. */
export type Params = Record<string, string>;

function parseForm(body: string): Params {
  const out: Params = {};
  for (const [k, v] of new URLSearchParams(body)) out[k] = v;
  return out;
}

/** `Prefix.N.Suffix` members of a list parameter, in order. */
function listOf(params: Params, prefix: string): Params[] {
  const items = new Map<number, Params>();
  for (const [k, v] of Object.entries(params)) {
    const m = new RegExp(`^${prefix.replace(/\./g, '\\.')}\\.(\\d+)(?:\\.(.*))?$`).exec(k);
    if (!m) continue;
    const n = Number(m[1]);
    const item = items.get(n) ?? {};
    item[m[2] ?? ''] = v;
    items.set(n, item);
  }
  return [...items.entries()].sort((a, b) => a[0] - b[0]).map(([, v]) => v);
}

/** The parameters ImportSnapshot takes (EC2 API reference), as query keys. */
const IMPORT_SNAPSHOT_KEYS = [
  /^Action$/, /^Version$/, /^ClientToken$/, /^Description$/, /^DryRun$/, /^Encrypted$/, /^KmsKeyId$/, /^RoleName$/,
  /^ClientData\.(Comment|UploadEnd|UploadSize|UploadStart)$/,
  /^DiskContainer\.(Description|Format|Url|UserBucket\.S3Bucket|UserBucket\.S3Key)$/,
  /^TagSpecification\.\d+\.(ResourceType|Tag\.\d+\.(Key|Value))$/,
];
const DESCRIBE_TASKS_KEYS = [/^Action$/, /^Version$/, /^DryRun$/, /^ImportTaskId\.\d+$/, /^MaxResults$/, /^NextToken$/, /^Filters\.\d+\.(Name|Value\.\d+)$/];

class Ec2Error extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

// ---------------------------------------------------------------------------------------------
// The stand-in

export type ImportScript =
  /** Walk through AWS's progress steps, one per `stepMs` and never more than one per describe (so a slow poller still sees each), then complete. */
  | { kind: 'complete'; stepMs?: number }
  /** Stay at `downloading/converting` until released (then complete). */
  | { kind: 'hold' }
  /** Walk two steps, then `deleting` and `deleted` with this status message. */
  | { kind: 'fail'; statusMessage: string; stepMs?: number }
  /** Stay at `pending` for ever. */
  | { kind: 'stall' };

interface TaskState {
  task: Task;
  token?: string;
  fingerprint: string;
  script: ImportScript;
  started: number;
  /** Describes that have reported this task: a step is never skipped, however late the poller. */
  described: number;
  released: boolean;
  completing?: Promise<void>;
  failure?: string;
}

export interface RecordedRequest {
  action: string;
  params: Params;
  /** What the stand-in did: answered itself, or forwarded to moto. */
  handled: 'standin' | 'moto';
  status?: number;
}

export interface Ec2Standin {
  /** The endpoint to give the SDK (AWS_ENDPOINT_URL_EC2). */
  url: string;
  requests: RecordedRequest[];
  /** Requests of one action. */
  calls(action: string): RecordedRequest[];
  tasks(): Task[];
  /** How the next ImportSnapshot's task behaves. @default { kind: 'complete', stepMs: 300 } */
  setImportScript(script: ImportScript): void;
  /** Let held tasks complete. */
  releaseImports(): void;
  /** Answer the next `count` calls of `action` with RequestLimitExceeded. */
  throttle(action: string, count: number): void;
  /** Forward the next RunInstances to moto, then drop the connection instead of answering. */
  dropNextRunInstancesResponse(): void;
  /** Instances launched from this AMI, or tagged with this image digest, fail their first boot (a rollback drill). */
  breakImage(imageIdOrDigest: string): void;
  /** Console text of an instance so far (what GetConsoleOutput serves). */
  consoleOf(instanceId: string): string;
  stop(): Promise<void>;
}

export interface Ec2StandinOptions {
  moto: string;
  region: string;
  /** VM Import roles that exist. @default ['vmimport'] */
  roles?: string[];
  /** How long an instance "boots" before its console shows first boot. @default 1000 */
  bootMs?: number;
  /** Scratch directory for the boot simulation. */
  scratch: string;
}

export async function startEc2Standin(options: Ec2StandinOptions): Promise<Ec2Standin> {
  const roles = new Set(options.roles ?? ['vmimport']);
  const bootMs = options.bootMs ?? 1000;
  const credentials = { accessKeyId: TEST_CREDENTIALS.AWS_ACCESS_KEY_ID, secretAccessKey: TEST_CREDENTIALS.AWS_SECRET_ACCESS_KEY };
  // The stand-in's own view of moto (never through itself).
  const ec2 = new EC2Client({ region: options.region, endpoint: options.moto, credentials });
  const s3 = new S3Client({ region: options.region, endpoint: options.moto, forcePathStyle: true, credentials });
  const requests: RecordedRequest[] = [];
  const tasks = new Map<string, TaskState>();
  const byToken = new Map<string, string>();
  const runTokens = new Map<string, { fingerprint: string; status: number; headers: http.OutgoingHttpHeaders; body: Buffer }>();
  const throttled = new Map<string, number>();
  const broken = new Set<string>();
  const consoles = new Map<string, { firstSeenRunning: number; text?: string; booting?: Promise<void> }>();
  let script: ImportScript = { kind: 'complete', stepMs: 300 };
  let dropNextRun = false;
  mkdirSync(options.scratch, { recursive: true });

  const requestId = () => `${randomBytes(4).toString('hex')}-${randomBytes(2).toString('hex')}-4${randomBytes(2).toString('hex').slice(1)}-a${randomBytes(2).toString('hex').slice(1)}-${randomBytes(6).toString('hex')}`;

  function checkKeys(params: Params, allowed: RegExp[]): void {
    for (const k of Object.keys(params)) {
      if (!allowed.some((re) => re.test(k))) throw new Ec2Error(400, 'UnknownParameter', `The parameter ${k} is not recognized`);
    }
  }

  function tagsOf(params: Params, resourceType: string): Record<string, string> {
    const tags: Record<string, string> = {};
    for (const spec of listOf(params, 'TagSpecification')) {
      if (spec.ResourceType !== resourceType) throw new Ec2Error(400, 'InvalidParameterValue', `'${spec.ResourceType}' is not a valid taggable resource type for this operation.`);
      for (const [k, v] of Object.entries(spec)) {
        const m = /^Tag\.(\d+)\.Key$/.exec(k);
        if (m) tags[v] = spec[`Tag.${m[1]}.Value`] ?? '';
      }
    }
    return tags;
  }

  async function importSnapshot(params: Params): Promise<string> {
    checkKeys(params, IMPORT_SNAPSHOT_KEYS);
    const format = params['DiskContainer.Format'];
    if (!format || !['VHD', 'VMDK', 'RAW'].includes(format.toUpperCase())) throw new Ec2Error(400, 'InvalidParameter', `Invalid disk format: ${format ?? '(none)'}; valid values are VHD, VMDK, RAW`);
    const bucket = params['DiskContainer.UserBucket.S3Bucket'];
    const key = params['DiskContainer.UserBucket.S3Key'];
    if (!bucket || !key) throw new Ec2Error(400, 'InvalidParameter', 'DiskContainer requires UserBucket.S3Bucket and UserBucket.S3Key (or Url)');
    const role = params.RoleName ?? 'vmimport';
    if (!roles.has(role)) throw new Ec2Error(400, 'InvalidParameter', ROLE_MISSING(role));
    const tags = tagsOf(params, 'import-snapshot-task');
    const { Action: _a, Version: _v, ...rest } = params;
    const fingerprint = JSON.stringify(Object.entries(rest).filter(([k]) => k !== 'ClientToken').sort());
    const token = params.ClientToken;
    if (token && byToken.has(token)) {
      const existing = tasks.get(byToken.get(token)!)!;
      if (existing.fingerprint !== fingerprint) throw new Ec2Error(400, 'IdempotentParameterMismatch', `The client token you have provided is associated with a resource that was created with different parameters.`);
      return importSnapshotResponse(requestId(), existing.task);
    }
    try {
      await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    } catch {
      throw new Ec2Error(400, 'InvalidParameter', NO_ACCESS_TO_OBJECT(key));
    }
    const id = `import-snap-${randomBytes(9).toString('hex').slice(0, 17)}`;
    const state: TaskState = {
      task: { id, description: params.Description, detail: { description: params['DiskContainer.Description'], diskImageSize: 0, format: format.toUpperCase(), progress: '3', status: 'active', statusMessage: 'pending', bucket, key }, tags },
      token,
      fingerprint,
      script,
      started: Date.now(),
      described: 0,
      released: false,
    };
    tasks.set(id, state);
    if (token) byToken.set(token, id);
    return importSnapshotResponse(requestId(), state.task);
  }

  /** The disk size of a streamOptimized VMDK in moto's S3, or why AWS would refuse it. */
  async function vmdkSize(bucket: string, key: string): Promise<number | string> {
    const res = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: 'bytes=0-511' }));
    const header = Buffer.from(await res.Body!.transformToByteArray());
    if (header.toString('latin1', 0, 4) !== 'KDMV') return UNSUPPORTED_VMDK;
    const flags = header.readUInt32LE(8);
    const compressAlgorithm = header.readUInt16LE(77);
    // streamOptimized: compressed grains (flag bit 16, deflate) and markers (bit 17).
    if (!(flags & (1 << 16)) || compressAlgorithm !== 1) return UNSUPPORTED_VMDK;
    return Number(header.readBigUInt64LE(12)) * 512;
  }

  async function complete(state: TaskState): Promise<void> {
    const d = state.task.detail;
    const size = await vmdkSize(d.bucket, d.key);
    if (typeof size === 'string') {
      state.failure = size;
      return;
    }
    const head = await s3.send(new HeadObjectCommand({ Bucket: d.bucket, Key: d.key }));
    const volume = await ec2.send(new CreateVolumeCommand({ AvailabilityZone: `${options.region}a`, Size: Math.max(1, Math.ceil(size / 2 ** 30)) }));
    const snapshot = await ec2.send(new CreateSnapshotCommand({ VolumeId: volume.VolumeId, Description: `Created by AWS-VMImport service for ${state.task.id}` }));
    Object.assign(d, { status: 'completed', snapshotId: snapshot.SnapshotId, diskImageSize: head.ContentLength ?? 0, progress: undefined, statusMessage: undefined });
  }

  /** Advance a task by its script and the time since it started. */
  async function advance(state: TaskState): Promise<void> {
    const d = state.task.detail;
    if (d.status === 'completed' || d.status === 'deleted') return;
    const s = state.script;
    const at = (step: number) => Object.assign(d, PROGRESS_STEPS[Math.min(step, PROGRESS_STEPS.length - 1)]!);
    if (s.kind === 'stall') return void at(0);
    if (s.kind === 'hold' && !state.released) return void at(2);
    const stepMs = s.kind === 'hold' ? 0 : (s.stepMs ?? 300);
    const step = stepMs === 0 ? Infinity : Math.min(Math.floor((Date.now() - state.started) / stepMs), state.described++);
    if (s.kind === 'fail' && step >= 2) {
      Object.assign(d, { status: step >= 3 ? 'deleted' : 'deleting', statusMessage: s.statusMessage, progress: undefined });
      return;
    }
    if (state.failure) {
      Object.assign(d, { status: 'deleted', statusMessage: state.failure, progress: undefined });
      return;
    }
    if (step < PROGRESS_STEPS.length) return void at(step);
    state.completing ??= complete(state);
    await state.completing;
    if (state.failure) Object.assign(d, { status: 'deleted', statusMessage: state.failure, progress: undefined });
  }

  async function describeImportSnapshotTasks(params: Params): Promise<string> {
    checkKeys(params, DESCRIBE_TASKS_KEYS);
    const ids = listOf(params, 'ImportTaskId').map((p) => p['']!);
    for (const id of ids) {
      if (!/^import-snap-[0-9a-f]{8,17}$/.test(id)) throw new Ec2Error(400, 'InvalidConversionTaskId.Malformed', `The given conversion task ID '${id}' is malformed.`);
      if (!tasks.has(id)) throw new Ec2Error(400, 'InvalidConversionTaskId', `The conversion task ID '${id}' does not exist.`);
    }
    const selected = ids.length ? ids.map((id) => tasks.get(id)!) : [...tasks.values()];
    for (const t of selected) await advance(t);
    return describeImportSnapshotTasksResponse(requestId(), selected.map((t) => t.task));
  }

  /** Run the image's EC2 reader for an instance, against an IMDS stand-in serving what moto holds for it. */
  async function boot(instanceId: string, imageId: string, privateIp: string, imageDigest: string | undefined): Promise<string> {
    const attr = await ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: instanceId, Attribute: 'userData' }));
    const userData = attr.UserData?.Value ? Buffer.from(attr.UserData.Value, 'base64').toString('utf8') : undefined;
    const doc = { 'meta-data': { 'instance-id': instanceId, 'local-ipv4': privateIp, 'ami-id': imageId }, ...(userData !== undefined ? { 'user-data': userData } : {}) };
    const token = randomBytes(24).toString('base64');
    const imds = http.createServer((req, res) => {
      const { status, body } = imdsAnswer(doc, token, req.method!, req.url!, req.headers as Record<string, string>);
      res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) }).end(body);
    });
    await new Promise<void>((r) => imds.listen(0, '127.0.0.1', r));
    const dir = await fs.mkdtemp(path.join(options.scratch, `${instanceId}-`));
    try {
      const { root, lib } = await scratchRoot(dir);
      const reader = path.join(lib, 'metadata.d', '30-ec2');
      await fs.writeFile(reader, EC2_READER, { mode: 0o755 });
      const dmi = path.join(dir, 'dmi');
      await fs.mkdir(dmi);
      await fs.writeFile(path.join(dmi, 'sys_vendor'), `${EC2_SYS_VENDOR}\n`);
      const bin = path.join(dir, 'bin');
      await fs.mkdir(bin);
      await fs.symlink((await run('sh', ['-c', 'command -v mawk'])).stdout.trim(), path.join(bin, 'awk'));
      const env = { PATH: `${bin}:/usr/sbin:/usr/bin:/sbin:/bin`, KUBEDOS_ROOT: root, KUBEDOS_DMI_DIR: dmi, KUBEDOS_IMDS_ADDR: '127.0.0.1', KUBEDOS_IMDS_PORT: String((imds.address() as AddressInfo).port), KUBEDOS_IMDS_NO_LINK: '1', TMPDIR: path.join(root, 'run') };
      const lines = ['Linux version 6.1.0 (stand-in boot of an EC2 instance)', `kubedos: metadata /usr/lib/kubedos/metadata.d/30-ec2`];
      const r = await run('bash', [reader], { env }).catch((err: { stdout?: string; stderr?: string }) => ({ stdout: err.stdout ?? '', stderr: err.stderr ?? 'failed' }));
      lines.push(...r.stdout.trimEnd().split('\n'));
      if (broken.has(imageId) || (imageDigest !== undefined && broken.has(imageDigest))) {
        lines.push('kubedos-firstboot.service: Main process exited, code=exited, status=1/FAILURE', '[FAILED] Failed to start kubedos-firstboot.service');
        return `${lines.join('\r\n')}\r\n`;
      }
      const pub = path.join(root, 'etc/ssh/ssh_host_ed25519_key.pub');
      const fp = await run('ssh-keygen', ['-l', '-f', pub]).then((o) => o.stdout.trim(), () => undefined);
      if (fp) lines.push(`kubedos: hostkey ${fp}`);
      const hostname = (await fs.readFile(path.join(root, 'etc/hostname'), 'utf8')).trim();
      lines.push('kubedos: firstboot done', `kubedos: ready ${hostname}`);
      return `${lines.join('\r\n')}\r\n`;
    } finally {
      await new Promise((r) => imds.close(r));
      await fs.rm(dir, { recursive: true, force: true });
    }
  }

  async function getConsoleOutput(params: Params): Promise<string> {
    const id = params.InstanceId!;
    const res = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }));
    const instance = res.Reservations?.[0]?.Instances?.[0];
    if (!instance) throw new Ec2Error(400, 'InvalidInstanceID.NotFound', `The instance ID '${id}' does not exist`);
    let c = consoles.get(id);
    if (!c) consoles.set(id, (c = { firstSeenRunning: Date.now() }));
    if (instance.State?.Name === 'running' && c.text === undefined && Date.now() - c.firstSeenRunning >= bootMs) {
      const digest = instance.Tags?.find((t) => t.Key === 'kubedos:image-digest')?.Value;
      c.booting ??= boot(id, instance.ImageId!, instance.PrivateIpAddress ?? '', digest).then((t) => void (c!.text = t));
      await c.booting;
    }
    return getConsoleOutputResponse(requestId(), id, c.text ?? '');
  }

  function forward(req: http.IncomingMessage, body: Buffer, res: http.ServerResponse | undefined): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
    return new Promise((resolve, reject) => {
      const target = new URL(options.moto);
      const up = http.request(
        { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host } },
        (r) => {
          const chunks: Buffer[] = [];
          r.on('data', (c: Buffer) => chunks.push(c));
          r.on('end', () => {
            const out = { status: r.statusCode ?? 502, headers: r.headers, body: Buffer.concat(chunks) };
            if (res) res.writeHead(out.status, { ...out.headers, 'content-length': out.body.length }).end(out.body);
            resolve(out);
          });
        },
      );
      up.on('error', reject);
      up.end(body);
    });
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        const body = Buffer.concat(chunks);
        const params = parseForm(body.toString('utf8'));
        const action = params.Action ?? '(none)';
        const record: RecordedRequest = { action, params, handled: 'standin' };
        requests.push(record);
        const reply = (status: number, xml: string) => {
          record.status = status;
          res.writeHead(status, { 'content-type': 'text/xml;charset=UTF-8', 'content-length': Buffer.byteLength(xml) }).end(xml);
        };
        try {
          const left = throttled.get(action) ?? 0;
          if (left > 0) {
            throttled.set(action, left - 1);
            return reply(503, errorResponse(requestId(), 'RequestLimitExceeded', 'Request limit exceeded.'));
          }
          if (action === 'ImportSnapshot') return reply(200, await importSnapshot(params));
          if (action === 'DescribeImportSnapshotTasks') return reply(200, await describeImportSnapshotTasks(params));
          if (action === 'GetConsoleOutput') return reply(200, await getConsoleOutput(params));
          if (action === 'RunInstances' && params.ClientToken) {
            const { Action: _a, Version: _v, ClientToken: token, ...rest } = params;
            const fingerprint = JSON.stringify(Object.entries(rest).sort());
            const seen = runTokens.get(token);
            if (seen) {
              if (seen.fingerprint !== fingerprint) return reply(400, errorResponse(requestId(), 'IdempotentParameterMismatch', 'The client token you have provided is associated with a resource that was created with different parameters.'));
              record.status = seen.status;
              return void res.writeHead(seen.status, { ...seen.headers, 'content-length': seen.body.length }).end(seen.body);
            }
            record.handled = 'moto';
            const out = await forward(req, body, undefined);
            record.status = out.status;
            if (out.status === 200) runTokens.set(token, { fingerprint, status: out.status, headers: out.headers, body: out.body });
            if (dropNextRun) {
              dropNextRun = false;
              return void res.socket?.destroy();
            }
            return void res.writeHead(out.status, { ...out.headers, 'content-length': out.body.length }).end(out.body);
          }
          record.handled = 'moto';
          record.status = (await forward(req, body, res)).status;
        } catch (err) {
          if (err instanceof Ec2Error) return reply(err.status, errorResponse(requestId(), err.code, err.message));
          reply(500, errorResponse(requestId(), 'InternalError', `stand-in: ${(err as Error).message}`));
        }
      })();
    });
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    calls: (action) => requests.filter((r) => r.action === action),
    tasks: () => [...tasks.values()].map((t) => t.task),
    setImportScript: (s) => void (script = s),
    releaseImports: () => {
      for (const t of tasks.values()) t.released = true;
    },
    throttle: (action, count) => void throttled.set(action, count),
    dropNextRunInstancesResponse: () => void (dropNextRun = true),
    breakImage: (imageId) => void broken.add(imageId),
    consoleOf: (id) => consoles.get(id)?.text ?? '',
    stop: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      ec2.destroy();
      s3.destroy();
    },
  };
}

/** moto's snapshots (for tests: what the import created). */
export async function motoSnapshots(moto: string, region: string): Promise<Array<{ id: string; tags: Record<string, string> }>> {
  const ec2 = new EC2Client({ region, endpoint: moto, credentials: { accessKeyId: TEST_CREDENTIALS.AWS_ACCESS_KEY_ID, secretAccessKey: TEST_CREDENTIALS.AWS_SECRET_ACCESS_KEY } });
  try {
    const res = await ec2.send(new DescribeSnapshotsCommand({ OwnerIds: ['self'] }));
    return (res.Snapshots ?? []).map((s) => ({ id: s.SnapshotId!, tags: Object.fromEntries((s.Tags ?? []).map((t) => [t.Key!, t.Value ?? ''])) }));
  } finally {
    ec2.destroy();
  }
}
