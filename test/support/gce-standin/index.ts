/**
 * COMPUTE ENGINE STAND-IN (no Compute Engine emulator exists). A small HTTP server on loopback
 * that speaks the compute v1 REST API's wire format for what the gcp driver calls: images
 * (insert, get, list with `labels.k = v` filters), instances (insert, get, list, delete, start,
 * serialPort), disks (get, delete), and global and zone operations, which answer RUNNING for a
 * few polls and then DONE, with `error.errors[]` when they failed. Bodies are checked against the
 * Discovery document's shapes (shapes.ts); references are checked as Compute Engine checks them
 * (machine type, disk type, network and image exist; an image's rawDisk.source must be a
 * readable Cloud Storage object, asked of fake-gcs-server; a gVNIC needs an image with the GVNIC
 * feature; names and labels follow their rules); a request id seen before returns its first
 * operation; errors come as `{"error": {code, message, errors: [{reason, domain, message}]}}`.
 *
 * It also serves the metadata server's token endpoint (`/computeMetadata/v1/…`,
 * test/support/gce-standin/metadata.cjs), so with GCE_METADATA_HOST pointing here Application
 * Default Credentials run their real code path, and every API request must carry that token.
 *
 * An inserted instance "boots" when its operation ends: the stand-in parses its `user-data`
 * metadata (a YAML parser) and writes the serial port output the image would, ending in
 * `kubedos: ready <hostname>`; `metadataOf(name)` gives the metadata server document the guest
 * would read, for the image's real reader. Faults are injected per request pattern, operation
 * failures per resource.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parse as parseYaml } from 'yaml';
import { fingerprintOfPublicKey } from '../../../src/targets/identity';
import { checkShape } from '../api-shape';
import { IMAGE, INSTANCE } from './shapes';

const { answer: metadataAnswer } = require('./metadata.cjs') as {
  answer: (doc: unknown, method: string, url: string, headers: Record<string, string | undefined>) => { status: number; headers: Record<string, string>; body: string };
};

export interface GceStandinOptions {
  project: string;
  zone: string;
  machineTypes?: readonly string[];
  networks?: readonly string[];
  /** Polls an operation answers RUNNING before DONE. @default 2 */
  polls?: number;
  /** Whether a Cloud Storage URL (https://storage.googleapis.com/b/o) can be read, and holds an image tar.gz: a problem, or undefined. */
  checkSource?: (source: string) => Promise<string | undefined>;
}

export interface GceRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  body?: unknown;
  status: number;
}

export interface GceFault {
  method?: string;
  path: RegExp;
  status: number;
  reason: string;
  message: string;
  domain?: string;
  times?: number;
}

interface Op {
  name: string;
  id: string;
  kind: 'zone' | 'global';
  operationType: string;
  targetLink: string;
  polls: number;
  status: 'PENDING' | 'RUNNING' | 'DONE';
  error?: { errors: Array<{ code: string; message: string }> };
  httpErrorStatusCode?: number;
  done: () => { code: string; message: string; status: number } | void;
}

export interface GceStandin {
  /** GCE_METADATA_HOST and KUBEDOS_GCE_ENDPOINT for the driver's process. */
  env: Record<string, string>;
  requests: GceRequest[];
  instance(name: string): Record<string, unknown> | undefined;
  disk(name: string): Record<string, unknown> | undefined;
  image(name: string): Record<string, unknown> | undefined;
  instances(): string[];
  disks(): string[];
  inject(fault: GceFault): void;
  clearFaults(): void;
  /** The insert operation of this instance ends with this error (e.g. ZONE_RESOURCE_POOL_EXHAUSTED). */
  failInsert(instance: string, code: string, message: string, status?: number): void;
  /** The metadata server document the instance's guest would read. */
  metadataOf(instance: string): Record<string, unknown>;
  /** Make an instance or disk that is not KubeDos's. */
  putInstance(name: string, body: Record<string, unknown>): void;
  putDisk(name: string, body: Record<string, unknown>): void;
  close(): Promise<void>;
}

const ROOT = 'https://www.googleapis.com/compute/v1';
const NAME = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;
const LABEL_KEY = /^[a-z][a-z0-9_-]{0,62}$/;
const LABEL_VALUE = /^[a-z0-9_-]{0,63}$/;

class GceError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
    readonly domain = 'global',
  ) {
    super(message);
  }
}

export async function startGceStandin(o: GceStandinOptions): Promise<GceStandin> {
  const { project, zone } = o;
  const machineTypes = new Set(o.machineTypes ?? ['e2-micro', 'e2-small', 'e2-medium', 'n2-standard-2']);
  const networks = new Set(o.networks ?? ['default']);
  const diskTypes = new Set(['pd-standard', 'pd-balanced', 'pd-ssd', 'hyperdisk-balanced']);
  const polls = o.polls ?? 2;
  const images = new Map<string, Record<string, unknown>>();
  const instances = new Map<string, Record<string, unknown> & { serial?: string }>();
  const disks = new Map<string, Record<string, unknown>>();
  const ops = new Map<string, Op>();
  const byRequestId = new Map<string, Op>();
  const faults: Array<GceFault & { left: number }> = [];
  const failedInserts = new Map<string, { code: string; message: string; status: number }>();
  const requests: GceRequest[] = [];
  let nextIp = 2;
  let base = '';
  const zoneUrl = `${ROOT}/projects/${project}/zones/${zone}`;
  const globalUrl = `${ROOT}/projects/${project}/global`;
  const metadataDoc = { project: { 'project-id': project, 'numeric-project-id': '481516234' }, instance: { id: '1', zone: `projects/481516234/zones/${zone}`, 'service-accounts': { default: { email: `kubedos@${project}.iam.gserviceaccount.com`, scopes: 'https://www.googleapis.com/auth/cloud-platform' } } } };

  function startOp(kind: Op['kind'], operationType: string, targetLink: string, done: Op['done']): Op {
    const name = `operation-${Date.now()}-${randomBytes(6).toString('hex')}-${randomBytes(4).toString('hex')}`;
    const op: Op = { name, id: String(BigInt(`0x${randomBytes(7).toString('hex')}`)), kind, operationType, targetLink, polls, status: 'RUNNING', done };
    ops.set(name, op);
    return op;
  }
  function opJson(op: Op) {
    return {
      kind: 'compute#operation',
      id: op.id,
      name: op.name,
      ...(op.kind === 'zone' ? { zone: zoneUrl } : {}),
      operationType: op.operationType,
      targetLink: op.targetLink,
      targetId: op.id,
      status: op.status,
      user: `kubedos@${project}.iam.gserviceaccount.com`,
      progress: op.status === 'DONE' ? 100 : 0,
      insertTime: new Date().toISOString(),
      startTime: new Date().toISOString(),
      ...(op.status === 'DONE' ? { endTime: new Date().toISOString() } : {}),
      ...(op.error ? { error: op.error, httpErrorStatusCode: op.httpErrorStatusCode, httpErrorMessage: 'SERVICE UNAVAILABLE' } : {}),
      selfLink: `${op.kind === 'zone' ? zoneUrl : globalUrl}/operations/${op.name}`,
    };
  }
  function poll(op: Op) {
    if (op.status !== 'DONE' && --op.polls <= 0) {
      const failure = op.done();
      op.status = 'DONE';
      if (failure) {
        op.error = { errors: [{ code: failure.code, message: failure.message }] };
        op.httpErrorStatusCode = failure.status;
      }
    }
    return opJson(op);
  }

  function matchesFilter(resource: Record<string, unknown>, filter: string | undefined): boolean {
    if (!filter) return true;
    const clauses = filter.split(/\s+AND\s+/i);
    return clauses.every((c) => {
      const m = /^\(?\s*labels\.([a-z][a-z0-9_-]*)\s*=\s*"?([a-z0-9_-]*)"?\s*\)?$/.exec(c.trim());
      if (!m) throw new GceError(400, 'invalid', `Invalid value for field 'filter': '${filter}'. Invalid list filter expression.`);
      return (resource.labels as Record<string, string> | undefined)?.[m[1]!] === m[2];
    });
  }

  function checkLabels(l: unknown, field: string) {
    for (const [k, v] of Object.entries((l ?? {}) as Record<string, string>)) {
      if (!LABEL_KEY.test(k) || !LABEL_VALUE.test(v)) throw new GceError(400, 'invalid', `Invalid value for field '${field}': '${k}=${v}'. Label keys and values must be lowercase letters, digits, '_' and '-', at most 63 characters.`);
    }
  }

  function bootSerial(name: string, userData: string | undefined): string {
    let config: { hostname?: string; ssh_keys?: { ed25519_public?: string } } = {};
    try {
      config = userData?.startsWith('#cloud-config') ? ((parseYaml(userData) as typeof config) ?? {}) : {};
    } catch {
      config = {};
    }
    const host = config.hostname ?? name;
    const lines = ['SeaBIOS (version 1.8.2-google)', 'Booting from Hard Disk 0...', '[    0.000000] Linux version 6.1.0-stand-in (Compute Engine stand-in boot)', 'kubedos: metadata /usr/lib/kubedos/metadata.d/40-gce'];
    if (userData) lines.push('kubedos: gce: read user-data of instance 1', `kubedos: nocloud: hostname ${host}`);
    if (config.ssh_keys?.ed25519_public) lines.push(`kubedos: hostkey 256 ${fingerprintOfPublicKey(config.ssh_keys.ed25519_public)} root@${host} (ED25519)`);
    lines.push('kubedos: firstboot done', `kubedos: ready ${host}`, '');
    return lines.join('\r\n');
  }

  async function insertImage(body: Record<string, unknown>, requestId: string | undefined) {
    const problem = checkShape(body, IMAGE);
    if (problem) throw new GceError(400, 'invalid', problem.kind === 'unknown' ? `Invalid JSON payload received. Unknown name "${problem.path.split('.').pop()}" at 'image': Cannot find field.` : `Invalid value for field 'resource.${problem.path}': ${problem.message}`);
    const name = String(body.name);
    if (!NAME.test(name)) throw new GceError(400, 'invalid', `Invalid value for field 'resource.name': '${name}'. Must be a match of regex '[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?'`);
    checkLabels(body.labels, 'resource.labels');
    if (images.has(name)) throw new GceError(409, 'alreadyExists', `The resource 'projects/${project}/global/images/${name}' already exists`);
    const source = String((body.rawDisk as { source?: string } | undefined)?.source ?? '');
    if (!/^https:\/\/storage\.googleapis\.com\/[^/]+\/.+$/.test(source)) throw new GceError(400, 'invalid', `Invalid value for field 'resource.rawDisk.source': '${source}'. The URL must be a Cloud Storage URL (https://storage.googleapis.com/<bucket>/<object>).`);
    const unreadable = await o.checkSource?.(source);
    if (unreadable) throw new GceError(400, 'invalid', `Invalid value for field 'resource.rawDisk.source': '${source}'. ${unreadable}`);
    const img: Record<string, unknown> = { kind: 'compute#image', id: String(BigInt(`0x${randomBytes(7).toString('hex')}`)), ...structuredClone(body), status: 'PENDING', diskSizeGb: '2', selfLink: `${globalUrl}/images/${name}`, creationTimestamp: new Date().toISOString() };
    images.set(name, img);
    const op = startOp('global', 'insert', `${globalUrl}/images/${name}`, () => {
      img.status = 'READY';
    });
    if (requestId) byRequestId.set(requestId, op);
    return opJson(op);
  }

  function insertInstance(body: Record<string, unknown>, requestId: string | undefined) {
    const problem = checkShape(body, INSTANCE);
    if (problem) throw new GceError(400, 'invalid', problem.kind === 'unknown' ? `Invalid JSON payload received. Unknown name "${problem.path.split('.').pop()}" at 'instance': Cannot find field.` : `Invalid value for field 'resource.${problem.path}': ${problem.message}`);
    const name = String(body.name);
    if (!NAME.test(name)) throw new GceError(400, 'invalid', `Invalid value for field 'resource.name': '${name}'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'`);
    if (instances.has(name)) throw new GceError(409, 'alreadyExists', `The resource 'projects/${project}/zones/${zone}/instances/${name}' already exists`);
    checkLabels(body.labels, 'resource.labels');
    const mt = /^(?:(?:https:\/\/www\.googleapis\.com\/compute\/v1\/)?projects\/[^/]+\/)?zones\/([^/]+)\/machineTypes\/([^/]+)$/.exec(String(body.machineType ?? ''));
    if (!mt || mt[1] !== zone || !machineTypes.has(mt[2]!)) throw new GceError(400, 'invalid', `Invalid value for field 'resource.machineType': '${String(body.machineType)}'. Machine type with name '${mt?.[2] ?? ''}' does not exist in zone '${zone}'.`);
    const items = ((body.metadata as { items?: Array<{ key: string; value?: string }> } | undefined)?.items ?? []);
    const size = items.reduce((n, i) => n + i.key.length + (i.value?.length ?? 0), 0);
    if (size > 512 * 1024) throw new GceError(400, 'invalid', "Invalid value for field 'resource.metadata': metadata is larger than 512 KB.");
    const diskList = (body.disks ?? []) as Array<{ boot?: boolean; autoDelete?: boolean; initializeParams?: { diskName?: string; sourceImage?: string; diskType?: string; diskSizeGb?: string; labels?: Record<string, string> } }>;
    const boot = diskList.find((d) => d.boot);
    if (!boot?.initializeParams) throw new GceError(400, 'invalid', "Invalid value for field 'resource.disks': a boot disk with initializeParams is required.");
    const imageName = /^(?:(?:https:\/\/www\.googleapis\.com\/compute\/v1\/)?projects\/([^/]+)\/)?global\/images\/([^/]+)$/.exec(boot.initializeParams.sourceImage ?? '');
    const image = imageName && (imageName[1] ?? project) === project ? images.get(imageName[2]!) : undefined;
    if (!image) throw new GceError(404, 'notFound', `The resource '${boot.initializeParams.sourceImage ?? ''}' was not found`);
    if (image.status !== 'READY') throw new GceError(400, 'resourceNotReady', `The resource 'projects/${project}/global/images/${imageName![2]}' is not ready`);
    const dt = /^(?:projects\/[^/]+\/)?zones\/([^/]+)\/diskTypes\/([^/]+)$/.exec(boot.initializeParams.diskType ?? `zones/${zone}/diskTypes/pd-standard`);
    if (!dt || dt[1] !== zone || !diskTypes.has(dt[2]!)) throw new GceError(400, 'invalid', `Invalid value for field 'resource.disks[0].initializeParams.diskType': '${boot.initializeParams.diskType}'. Disk type does not exist.`);
    checkLabels(boot.initializeParams.labels, 'resource.disks[0].initializeParams.labels');
    const diskName = boot.initializeParams.diskName ?? name;
    if (disks.has(diskName)) throw new GceError(409, 'alreadyExists', `The resource 'projects/${project}/zones/${zone}/disks/${diskName}' already exists`);
    const nics = (body.networkInterfaces ?? []) as Array<{ network?: string; subnetwork?: string; nicType?: string; accessConfigs?: unknown[] }>;
    if (nics.length === 0) throw new GceError(400, 'invalid', "Invalid value for field 'resource.networkInterfaces': at least one network interface is required.");
    for (const [i, nic] of nics.entries()) {
      const net = /^(?:projects\/[^/]+\/)?global\/networks\/([^/]+)$/.exec(nic.network ?? 'global/networks/default');
      if (!net || !networks.has(net[1]!)) throw new GceError(404, 'notFound', `The resource '${nic.network}' was not found`);
      if (nic.nicType === 'GVNIC' && !((image.guestOsFeatures as Array<{ type: string }> | undefined) ?? []).some((f) => f.type === 'GVNIC')) {
        throw new GceError(400, 'invalid', `Invalid value for field 'resource.networkInterfaces[${i}].nicType': 'GVNIC'. GVNIC requires an image with the GVNIC guest OS feature.`);
      }
    }
    const selfLink = `${zoneUrl}/instances/${name}`;
    const instance: Record<string, unknown> & { serial?: string } = {
      kind: 'compute#instance',
      id: String(BigInt(`0x${randomBytes(7).toString('hex')}`)),
      creationTimestamp: new Date().toISOString(),
      ...structuredClone(body),
      machineType: `${zoneUrl}/machineTypes/${mt[2]}`,
      zone: zoneUrl,
      status: 'PROVISIONING',
      selfLink,
      networkInterfaces: nics.map((n, i) => ({
        ...structuredClone(n),
        name: `nic${i}`,
        network: `${globalUrl}/networks/${/networks\/([^/]+)$/.exec(n.network ?? 'default')?.[1] ?? 'default'}`,
        networkIP: `10.164.0.${nextIp++}`,
        ...(n.accessConfigs?.length ? { accessConfigs: (n.accessConfigs as Array<Record<string, unknown>>).map((a) => ({ ...a, kind: 'compute#accessConfig', natIP: `34.90.0.${nextIp++}` })) } : {}),
      })),
      disks: diskList.map((d, i) => ({ kind: 'compute#attachedDisk', index: i, boot: !!d.boot, autoDelete: !!d.autoDelete, type: 'PERSISTENT', mode: 'READ_WRITE', deviceName: 'boot', source: `${zoneUrl}/disks/${d.initializeParams?.diskName ?? name}`, interface: 'SCSI' })),
      metadata: { kind: 'compute#metadata', fingerprint: randomBytes(8).toString('base64'), items },
    };
    instances.set(name, instance);
    const op = startOp('zone', 'insert', selfLink, () => {
      const failure = failedInserts.get(name);
      if (failure) {
        instances.delete(name);
        return failure;
      }
      disks.set(diskName, {
        kind: 'compute#disk',
        id: String(BigInt(`0x${randomBytes(7).toString('hex')}`)),
        name: diskName,
        sizeGb: String(boot.initializeParams!.diskSizeGb ?? image.diskSizeGb ?? '10'),
        zone: zoneUrl,
        status: 'READY',
        sourceImage: `${globalUrl}/images/${imageName![2]}`,
        type: `${zoneUrl}/diskTypes/${dt[2]}`,
        labels: boot.initializeParams!.labels ?? {},
        users: [selfLink],
        selfLink: `${zoneUrl}/disks/${diskName}`,
      });
      instance.status = 'RUNNING';
      instance.serial = bootSerial(name, items.find((i) => i.key === 'user-data')?.value);
    });
    if (requestId) byRequestId.set(requestId, op);
    return opJson(op);
  }

  function deleteInstance(name: string) {
    const instance = instances.get(name);
    if (!instance) throw new GceError(404, 'notFound', `The resource 'projects/${project}/zones/${zone}/instances/${name}' was not found`);
    instance.status = 'STOPPING';
    const op = startOp('zone', 'delete', instance.selfLink as string, () => {
      instances.delete(name);
      for (const d of instance.disks as Array<{ source: string; autoDelete: boolean }>) {
        const diskName = d.source.split('/').pop()!;
        const disk = disks.get(diskName);
        if (!disk) continue;
        if (d.autoDelete) disks.delete(diskName);
        else disk.users = ((disk.users as string[] | undefined) ?? []).filter((u) => u !== instance.selfLink);
      }
    });
    return opJson(op);
  }

  async function handle(method: string, url: URL, body: unknown, headers: http.IncomingHttpHeaders): Promise<{ status: number; body: unknown; headers?: Record<string, string>; raw?: string }> {
    const p = url.pathname;
    if (p.startsWith('/computeMetadata/')) {
      const r = metadataAnswer(metadataDoc, method, `${p}${url.search}`, headers as Record<string, string>);
      return { status: r.status, body: undefined, raw: r.body, headers: r.headers };
    }
    if (!String(headers.authorization ?? '').startsWith('Bearer ya29.standin.')) throw new GceError(401, 'required', 'Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.', 'global');
    for (const f of faults) {
      if (f.left > 0 && f.path.test(p) && (!f.method || f.method === method)) {
        f.left--;
        throw new GceError(f.status, f.reason, f.message, f.domain ?? 'global');
      }
    }
    const requestId = url.searchParams.get('requestId') ?? undefined;
    if (requestId && !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(requestId)) throw new GceError(400, 'invalid', `Invalid value for field 'requestId': '${requestId}'. The request id must be a valid UUID.`);
    if (requestId && byRequestId.has(requestId) && method === 'POST') return { status: 200, body: opJson(byRequestId.get(requestId)!) };
    const g = new RegExp(`^/compute/v1/projects/${project}/global/(images|operations)(?:/([^/]+))?$`).exec(p);
    if (g) {
      const [, kind, name] = g;
      if (kind === 'operations') {
        const op = name ? ops.get(name) : undefined;
        if (!op || op.kind !== 'global') throw new GceError(404, 'notFound', `The resource 'projects/${project}/global/operations/${name}' was not found`);
        return { status: 200, body: poll(op) };
      }
      if (!name && method === 'POST') return { status: 200, body: await insertImage(body as Record<string, unknown>, requestId) };
      if (!name && method === 'GET') return { status: 200, body: { kind: 'compute#imageList', id: `projects/${project}/global/images`, items: [...images.values()].filter((i) => matchesFilter(i, url.searchParams.get('filter') ?? undefined)), selfLink: `${globalUrl}/images` } };
      const img = images.get(name!);
      if (method === 'GET') {
        if (!img) throw new GceError(404, 'notFound', `The resource 'projects/${project}/global/images/${name}' was not found`);
        return { status: 200, body: img };
      }
    }
    const z = new RegExp(`^/compute/v1/projects/${project}/zones/([^/]+)/(instances|disks|operations)(?:/([^/]+))?(?:/([A-Za-z]+))?$`).exec(p);
    if (z) {
      const [, inZone, kind, name, action] = z;
      if (inZone !== zone) throw new GceError(400, 'invalid', `Invalid value for field 'zone': '${inZone}'. Unknown zone.`);
      if (kind === 'operations') {
        const op = name ? ops.get(name) : undefined;
        if (!op || op.kind !== 'zone') throw new GceError(404, 'notFound', `The resource 'projects/${project}/zones/${zone}/operations/${name}' was not found`);
        if (action === 'wait') for (let i = 0; i < polls && op.status !== 'DONE'; i++) poll(op);
        return { status: 200, body: poll(op) };
      }
      if (kind === 'instances') {
        if (!name && method === 'POST') return { status: 200, body: insertInstance(body as Record<string, unknown>, requestId) };
        if (!name && method === 'GET') return { status: 200, body: { kind: 'compute#instanceList', id: `projects/${project}/zones/${zone}/instances`, items: [...instances.values()].filter((i) => matchesFilter(i, url.searchParams.get('filter') ?? undefined)).map(({ serial: _s, ...i }) => i), selfLink: `${zoneUrl}/instances` } };
        const instance = instances.get(name!);
        if (!instance) throw new GceError(404, 'notFound', `The resource 'projects/${project}/zones/${zone}/instances/${name}' was not found`);
        if (!action && method === 'GET') {
          const { serial: _s, ...view } = instance;
          return { status: 200, body: view };
        }
        if (!action && method === 'DELETE') {
          const op = deleteInstance(name!);
          if (requestId) byRequestId.set(requestId, ops.get(op.name)!);
          return { status: 200, body: op };
        }
        if (action === 'serialPort' && method === 'GET') {
          const port = Number(url.searchParams.get('port') ?? '1');
          if (!Number.isInteger(port) || port < 1 || port > 4) throw new GceError(400, 'invalid', `Invalid value for field 'port': '${port}'. Must be between 1 and 4.`);
          const contents = port === 1 ? (instance.serial ?? '') : '';
          return { status: 200, body: { kind: 'compute#serialPortOutput', contents, start: '0', next: String(Buffer.byteLength(contents)), selfLink: `${instance.selfLink as string}/serialPort` } };
        }
        if (action === 'start' && method === 'POST') {
          const op = startOp('zone', 'start', instance.selfLink as string, () => {
            instance.status = 'RUNNING';
          });
          if (instance.status === 'TERMINATED' || instance.status === 'STOPPED') instance.status = 'STAGING';
          if (requestId) byRequestId.set(requestId, op);
          return { status: 200, body: opJson(op) };
        }
      }
      if (kind === 'disks' && name) {
        const disk = disks.get(name);
        if (!disk) throw new GceError(404, 'notFound', `The resource 'projects/${project}/zones/${zone}/disks/${name}' was not found`);
        if (method === 'GET') return { status: 200, body: disk };
        if (method === 'DELETE') {
          if (((disk.users as string[] | undefined) ?? []).length > 0) throw new GceError(400, 'resourceInUseByAnotherResource', `The disk resource 'projects/${project}/zones/${zone}/disks/${name}' is already being used by '${(disk.users as string[])[0]}'`);
          const op = startOp('zone', 'delete', disk.selfLink as string, () => {
            disks.delete(name);
          });
          return { status: 200, body: opJson(op) };
        }
      }
    }
    throw new GceError(404, 'notFound', `The requested URL ${p} was not found on this server.`);
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url!, 'http://127.0.0.1');
      const raw = Buffer.concat(chunks).toString('utf8');
      const record: GceRequest = { method: req.method!, path: url.pathname, query: Object.fromEntries(url.searchParams), status: 0 };
      void (async () => {
        try {
          let body: unknown;
          if (raw) {
            try {
              body = JSON.parse(raw);
            } catch {
              throw new GceError(400, 'parseError', 'Invalid JSON payload received.');
            }
          }
          record.body = body;
          const r = await handle(req.method!, url, body, req.headers);
          record.status = r.status;
          if (r.raw !== undefined) res.writeHead(r.status, { ...r.headers, 'content-length': Buffer.byteLength(r.raw) }).end(r.raw);
          else res.writeHead(r.status, { 'content-type': 'application/json; charset=UTF-8', ...r.headers }).end(JSON.stringify(r.body));
        } catch (err) {
          const e = err instanceof GceError ? err : new GceError(500, 'backendError', (err as Error).message);
          record.status = e.status;
          res.writeHead(e.status, { 'content-type': 'application/json; charset=UTF-8' }).end(JSON.stringify({ error: { code: e.status, message: e.message, errors: [{ message: e.message, domain: e.domain, reason: e.reason }] } }));
        } finally {
          if (!url.pathname.startsWith('/computeMetadata/')) requests.push(record);
        }
      })();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}`;

  return {
    env: { GCE_METADATA_HOST: `127.0.0.1:${port}`, KUBEDOS_GCE_ENDPOINT: base },
    requests,
    instance: (name) => {
      const i = instances.get(name);
      if (!i) return undefined;
      const { serial: _s, ...view } = i;
      return view;
    },
    disk: (name) => disks.get(name),
    image: (name) => images.get(name),
    instances: () => [...instances.keys()].sort(),
    disks: () => [...disks.keys()].sort(),
    inject(fault) {
      faults.push({ ...fault, left: fault.times ?? 1 });
    },
    clearFaults() {
      faults.length = 0;
    },
    failInsert(instance, code, message, status = 503) {
      failedInserts.set(instance, { code, message, status });
    },
    metadataOf(name) {
      const i = instances.get(name);
      if (!i) throw new Error(`no instance ${name}`);
      const items = ((i.metadata as { items?: Array<{ key: string; value?: string }> }).items ?? []);
      return { instance: { id: i.id, name, hostname: `${name}.${zone}.c.${project}.internal`, zone: `projects/481516234/zones/${zone}`, attributes: Object.fromEntries(items.map((x) => [x.key, x.value ?? ''])) } };
    },
    putInstance(name, body) {
      instances.set(name, { kind: 'compute#instance', name, status: 'RUNNING', selfLink: `${zoneUrl}/instances/${name}`, disks: [], ...body });
    },
    putDisk(name, body) {
      disks.set(name, { kind: 'compute#disk', name, selfLink: `${zoneUrl}/disks/${name}`, users: [], ...body });
    },
    async close() {
      const closed = new Promise((r) => server.close(r));
      server.closeAllConnections();
      await closed;
    },
  };
}
