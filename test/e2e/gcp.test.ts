/**
 * The gcp driver against REAL fake-gcs-server (a Cloud Storage emulator, started here on
 * loopback) for the resumable upload of the image tar.gz, and a COMPUTE ENGINE STAND-IN
 * (test/support/gce-standin: compute v1 REST wire format, zone and global operations, bodies
 * checked against the Discovery document's shapes; no Compute Engine emulator exists) for images,
 * instances and disks. What is real: Google's SDKs (@google-cloud/compute over its REST transport,
 * @google-cloud/storage) with Application Default Credentials (they get their token from the
 * stand-in's metadata server, GCE_METADATA_HOST), the driver, the image's own GCE reader (run with
 * bash against what the metadata server would hold), and, at the end, the fleet workflow on the
 * dev server with a cloud worker on its own queue. The tar.gz is the shared test image's `gce`
 * artifact.
 */
import '../support/gaxios-in-jest';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, promises as fs } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { GcpInvalidRequestError, GcpPermissionError, GcpQuotaError, GcpResourceNotOwnedError, GcpThrottledError, KubedosError } from '../../src/errors';
import { freePort } from '../../src/exec/ports';
import { GCE_PRODUCT_NAME, GCE_READER } from '../../src/foundry/gce-reader';
import { gcp, type GcpTargetSpec } from '../../src/targets/gcp';
import { GcpDriver, imageNameOf, instanceNameOf } from '../../src/targets/gcp/driver';
import { CHUNK } from '../../src/targets/gcp/upload';
import { resumedOperation, type CreateNodeRequest, type DriverContext, type NodeLabels, type PreparedImage, type ProgressDetail } from '../../src/targets/driver';
import { generateIdentity, publicPart } from '../../src/targets/identity';
import { renderNocloud } from '../../src/targets/nocloud';
import { describeCloudFleet } from '../support/cloud-fleet';
import { startGceStandin, type GceStandin } from '../support/gce-standin';
import { builtImage } from '../support/images';
import { runReader } from '../support/reader-scene';
import { countingProxy, startFakeGcs, type RunningEmulator } from '../support/storage-emulators';

const { answer: metadataAnswer } = require('../support/gce-standin/metadata.cjs') as {
  answer: (doc: unknown, method: string, url: string, headers: Record<string, string | undefined>) => { status: number; headers: Record<string, string>; body: string };
};

jest.setTimeout(15 * 60_000);

const PROJECT = 'kubedos-test-proj';
const ZONE = 'europe-west4-a';
const BUCKET = 'kubedos-images-test';
const KEYS = ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBx2k1yq5cXzRk0m9YV0l3cJvY8QdYgZ0m2l9ZsV1c3d ops@example'];
const DIGEST = 'f'.repeat(64);

let tmp: string;
let gcs: RunningEmulator;
let proxy: Awaited<ReturnType<typeof countingProxy>>;
let gce: GceStandin;
let artifact: { format: string; path: string; sha256: string; size: number };
let prepared: PreparedImage;
const savedEnv: Record<string, string | undefined> = {};
const platform = `p${randomUUID().slice(0, 6)}`;

function spec(overrides: Record<string, unknown> = {}): GcpTargetSpec {
  return gcp.schema.parse({ type: 'gcp', project: PROJECT, zone: ZONE, bucket: BUCKET, ...overrides }) as GcpTargetSpec;
}
const drivers: GcpDriver[] = [];
function driver(overrides: Record<string, unknown> = {}): GcpDriver {
  const d = new GcpDriver('gce', spec(overrides), { stateDir: path.join(tmp, 'state') }, { pollIntervalMs: 100 });
  drivers.push(d);
  return d;
}
function labels(fleet: string, o: Partial<NodeLabels> = {}): NodeLabels {
  return { platform, fleet, generation: 1, image: 'kubedos-test', imageDigest: DIGEST, ...o };
}
function request(nodeId: string, hostname: string, l: NodeLabels): CreateNodeRequest {
  return { nodeId, labels: l, image: prepared, identity: generateIdentity(hostname), authorizedKeys: KEYS };
}
const calls = (method: string, re: RegExp) => gce.requests.filter((r) => r.method === method && re.test(r.path));
const uploads = (from = 0) => proxy.requests.slice(from).filter((r) => r.method === 'PUT' && r.url.includes('upload_id=') && r.status !== undefined && r.status < 500);

function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    http.get(url, { headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
    }).on('error', reject);
  });
}

/** What Compute Engine checks of rawDisk.source: a readable object, a gzip'd tar whose first member is disk.raw. */
async function checkSource(source: string): Promise<string | undefined> {
  const [, bucket, ...object] = new URL(source).pathname.split('/');
  const got = await get(`${gcs.url}/storage/v1/b/${bucket}/o/${encodeURIComponent(object.join('/'))}?alt=media`, { range: 'bytes=0-65535' });
  if (got.status !== 200 && got.status !== 206) return `The resource ${source} cannot be read (HTTP ${got.status}).`;
  let tar: Buffer;
  try {
    tar = zlib.gunzipSync(got.body.subarray(0, 65536), { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  } catch {
    return 'The image file is not a gzip-compressed tar archive.';
  }
  if (tar.toString('latin1', 0, 9) !== 'disk.raw\0' || tar.toString('latin1', 257, 265) !== 'ustar  \0') return "The tar archive must hold disk.raw as its first member (GNU format).";
  return undefined;
}

beforeAll(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'kubedos-gcp-test-'));
  const img = await builtImage();
  const entry = img.manifest.artifacts.find((a) => a.format === 'gce')!;
  artifact = { format: 'gce', path: path.join(img.dir, entry.file), sha256: entry.sha256, size: entry.size };
  // The proxy in front of fake-gcs-server; fake-gcs hands out session URIs through it.
  const gcsPort = await freePort();
  proxy = await countingProxy(`http://127.0.0.1:${gcsPort}`);
  gcs = await startFakeGcs([BUCKET], { port: gcsPort, externalUrl: proxy.url });
  gce = await startGceStandin({ project: PROJECT, zone: ZONE, checkSource });
  const env = { ...gce.env, KUBEDOS_GCS_ENDPOINT: proxy.url, HOME: tmp, GOOGLE_APPLICATION_CREDENTIALS: '' };
  for (const [k, v] of Object.entries(env)) {
    savedEnv[k] = process.env[k];
    if (v === '') delete process.env[k];
    else process.env[k] = v;
  }
  delete process.env.STORAGE_EMULATOR_HOST;
});

afterAll(async () => {
  await Promise.allSettled(drivers.map((d) => d.close()));
  for (const [k, v] of Object.entries(savedEnv)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  await gce?.close();
  await proxy?.close();
  await gcs?.stop();
  await fs.rm(tmp, { recursive: true, force: true });
});

describe('prepare', () => {
  test('the tar.gz goes to Cloud Storage by a resumable upload that a killed worker resumes from its heartbeat; images.insert with UEFI_COMPATIBLE, VIRTIO_SCSI_MULTIQUEUE and GVNIC, found again by its digest label', async () => {
    const d = driver();
    const source = { name: 'kubedos-test', digest: DIGEST, artifact };
    const objectName = `kubedos/${artifact.sha256}.tar.gz`;

    // 1. Killed after three chunks were acknowledged.
    const abort = new AbortController();
    let last: ProgressDetail | undefined;
    const ctx1: DriverContext = {
      signal: abort.signal,
      progress: (p) => {
        if (resumedOperation(p)) last = p;
        if ((p.done ?? 0) >= 3 * CHUNK) abort.abort();
      },
    };
    await expect(d.prepare(source, ctx1)).rejects.toThrow();
    for (let i = 0; i < 50 && proxy.requests.some((r) => r.status === undefined); i++) await new Promise((r) => setTimeout(r, 100));
    const session = JSON.parse(resumedOperation(last)!) as { gcs: string; uri: string; offset: number };
    expect(session.gcs).toBe(objectName);
    expect(session.offset).toBeGreaterThanOrEqual(3 * CHUNK);
    expect(session.offset % CHUNK).toBe(0);
    expect(session.uri.startsWith(`${proxy.url}/upload/storage/v1/b/${BUCKET}/o?`)).toBe(true);
    expect(session.uri).toMatch(/upload_id=/);
    expect(calls('POST', /\/global\/images$/)).toEqual([]);

    // 2. The next attempt, given that heartbeat: the same session, from the acknowledged offset.
    const before = proxy.requests.length;
    prepared = await driver().prepare(source, { previous: last });
    const resumed = uploads(before);
    const sent = resumed.reduce((n, r) => n + r.bytes, 0);
    expect(new Set(resumed.map((r) => new URL(r.url, proxy.url).searchParams.get('upload_id')))).toEqual(new Set([new URL(session.uri).searchParams.get('upload_id')]));
    expect(sent).toBe(artifact.size - session.offset);
    expect(/^bytes (\d+)-/.exec(String(resumed[0]!.headers['content-range']))?.[1]).toBe(String(session.offset));
    console.log(`gcs resumable upload: ${artifact.size} bytes in chunks of ${CHUNK}; killed after ${session.offset} acknowledged, resumed with ${sent} bytes in ${resumed.length} requests`);

    // The object in fake-gcs-server: the artifact, byte for byte, with its digest in the metadata.
    const meta = JSON.parse((await get(`${gcs.url}/storage/v1/b/${BUCKET}/o/${encodeURIComponent(objectName)}`)).body.toString('utf8')) as { size: string; md5Hash: string; metadata?: Record<string, string> };
    expect(Number(meta.size)).toBe(artifact.size);
    expect(meta.metadata).toEqual({ 'kubedos-sha256': artifact.sha256 });
    const content = (await get(`${gcs.url}/storage/v1/b/${BUCKET}/o/${encodeURIComponent(objectName)}?alt=media`)).body;
    expect(createHash('sha256').update(content).digest('hex')).toBe(artifact.sha256);

    // images.insert: the body Compute Engine documents, with a request id, from that object.
    const [insert] = calls('POST', /\/global\/images$/);
    const imageName = imageNameOf('kubedos-test', artifact.sha256);
    expect(insert!.query.requestId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-8[0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(insert!.body).toEqual({
      name: imageName,
      description: `KubeDos image kubedos-test: sha256:${artifact.sha256} (publication ${DIGEST})`,
      labels: { kubedos: 'image', 'kubedos-sha256': artifact.sha256.slice(0, 63), 'kubedos-image': 'kubedos-test' },
      rawDisk: { source: `https://storage.googleapis.com/${BUCKET}/${objectName}` },
      guestOsFeatures: [{ type: 'UEFI_COMPATIBLE' }, { type: 'VIRTIO_SCSI_MULTIQUEUE' }, { type: 'GVNIC' }],
      architecture: 'X86_64',
    });
    expect(gce.image(imageName)).toMatchObject({ status: 'READY' });
    expect(prepared).toEqual({ digest: DIGEST, location: `projects/${PROJECT}/global/images/${imageName}` });

    // 3. A repeat: nothing uploaded, no image inserted; found by its label.
    const n = proxy.requests.length;
    expect(await driver().prepare(source, {})).toEqual(prepared);
    expect(uploads(n)).toEqual([]);
    expect(calls('POST', /\/global\/images$/)).toHaveLength(1);
    expect(calls('GET', /\/global\/images$/).at(-1)!.query.filter).toBe(`labels.kubedos-sha256 = ${artifact.sha256.slice(0, 63)}`);
  });
});

describe('nodes', () => {
  test("create: an instance whose body is the API's, with the identity as user-data; the image's reader applies it from the metadata server", async () => {
    const d = driver();
    const req = request(`${platform}-web-0001`, 'web-0001', labels('web'));
    const beats: ProgressDetail[] = [];
    const identity = await d.create(req, { progress: (p) => beats.push(p) });
    expect(identity).toEqual(publicPart(req.identity));
    const name = instanceNameOf(req.nodeId);
    const [insert] = calls('POST', /\/zones\/[^/]+\/instances$/);
    expect(insert!.query.requestId).toMatch(/^[0-9a-f-]{36}$/);
    const body = insert!.body as Record<string, any>;
    expect(body.networkInterfaces[0].accessConfigs).toBeUndefined();
    expect(body).toMatchObject({
      name,
      machineType: `zones/${ZONE}/machineTypes/e2-small`,
      labels: { kubedos: 'node', 'kubedos-node': name, 'kubedos-platform': platform, 'kubedos-fleet': 'web', 'kubedos-generation': '1' },
      disks: [{ boot: true, autoDelete: true, type: 'PERSISTENT', deviceName: 'boot', initializeParams: { diskName: name, sourceImage: prepared.location, diskType: `zones/${ZONE}/diskTypes/pd-balanced` } }],
      networkInterfaces: [{ network: 'global/networks/default', nicType: 'GVNIC' }],
      shieldedInstanceConfig: { enableSecureBoot: false, enableVtpm: true, enableIntegrityMonitoring: true },
    });
    const items = Object.fromEntries((body.metadata.items as Array<{ key: string; value: string }>).map((i) => [i.key, i.value]));
    expect(items['user-data']).toBe(renderNocloud({ instanceId: req.nodeId, identity: req.identity, authorizedKeys: KEYS })['user-data']);
    expect(JSON.parse(items['kubedos-record']!)).toEqual({ kubedos: 1, nodeId: req.nodeId, labels: req.labels, identity });
    expect(items['kubedos-record']).not.toContain('PRIVATE KEY');
    expect(beats.some((b) => resumedOperation(b) && JSON.parse(resumedOperation(b)!).gce === `insert-instance:${name}`)).toBe(true);
    expect(gce.disk(name)).toMatchObject({ labels: { kubedos: 'node', 'kubedos-node': name } });

    // The guest side: the real metadata-server stand-in serving this instance's metadata, read by the image's reader.
    const doc = gce.metadataOf(name);
    const server = http.createServer((q, s) => {
      const r = metadataAnswer(doc, q.method!, q.url!, q.headers as Record<string, string>);
      s.writeHead(r.status, { ...r.headers, 'content-length': Buffer.byteLength(r.body) }).end(r.body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const guest = await runReader({ dir: tmp, name: '40-gce', script: GCE_READER, dmi: { product_name: GCE_PRODUCT_NAME, sys_vendor: 'Google' }, env: { KUBEDOS_GCE_METADATA: '127.0.0.1', KUBEDOS_GCE_METADATA_PORT: String((server.address() as { port: number }).port), KUBEDOS_GCE_NO_LINK: '1' } });
      expect(guest.stderr).toBe('');
      expect({ hostname: guest.hostname, hostKeyPublic: guest.hostKeyPublic, hostKeyPrivate: guest.hostKeyPrivate, machineId: guest.machineId }).toEqual({ hostname: 'web-0001', hostKeyPublic: identity.hostKeyPublic, hostKeyPrivate: req.identity.hostKeyPrivate, machineId: identity.machineId });
    } finally {
      await new Promise((r) => server.close(r));
    }

    await d.start(req.nodeId, {});
    expect(calls('POST', /\/start$/)).toEqual([]);
    expect(await d.readiness(req.nodeId, {})).toBe(true);
    expect(await d.address(req.nodeId, {})).toEqual({ host: expect.stringMatching(/^10\.164\.0\.\d+$/), ports: { 22: 22 } });
    expect(await d.list({ platform, fleet: 'web' }, {})).toEqual([{ nodeId: req.nodeId, labels: req.labels, identity, running: true }]);
  });

  test('a retried create keeps the instance and its identity; a create killed mid-operation waits for that operation, not inserting again', async () => {
    const nodeId = `${platform}-web-0002`;
    const name = instanceNameOf(nodeId);
    const first = request(nodeId, 'web-0002', labels('web'));
    const abort = new AbortController();
    let last: ProgressDetail | undefined;
    await expect(driver().create(first, { signal: abort.signal, progress: (p) => ((last = p), resumedOperation(p) && abort.abort()) })).rejects.toThrow();
    expect(calls('POST', new RegExp(`/instances$`)).filter((r) => (r.body as { name: string }).name === name)).toHaveLength(1);
    const op = JSON.parse(resumedOperation(last)!).operation as string;
    const got = await driver().create(request(nodeId, 'web-0002', labels('web')), { previous: last });
    expect(got).toEqual(publicPart(first.identity));
    expect(calls('GET', new RegExp(`/operations/${op}$`)).length).toBeGreaterThan(0);
    expect(calls('POST', new RegExp(`/instances$`)).filter((r) => (r.body as { name: string }).name === name)).toHaveLength(1);
    expect(await driver().create(request(nodeId, 'web-0002', labels('web')), {})).toEqual(publicPart(first.identity));
  });

  test('an external IP when the spec asks for one: ONE_TO_ONE_NAT, the node\'s address', async () => {
    const d = driver({ externalIp: true });
    const req = request(`${platform}-pub-0001`, 'pub-0001', labels('pub'));
    await d.create(req, {});
    expect((calls('POST', /\/instances$/).at(-1)!.body as Record<string, any>).networkInterfaces[0].accessConfigs).toEqual([{ name: 'External NAT', type: 'ONE_TO_ONE_NAT', networkTier: 'PREMIUM' }]);
    expect(await d.address(req.nodeId, {})).toEqual({ host: expect.stringMatching(/^34\.90\.0\.\d+$/), ports: { 22: 22 } });
    await d.destroy(req.nodeId, {});
  });

  test("destroy removes the instance and its boot disk, and nothing else; an instance by that name that is not KubeDos's is never touched", async () => {
    const d = driver();
    const req = request(`${platform}-web-0003`, 'web-0003', labels('web'));
    await d.create(req, {});
    const name = instanceNameOf(req.nodeId);
    gce.putInstance('someone-elses', { labels: { owner: 'me' } });
    gce.putDisk('someone-elses', { labels: { owner: 'me' } });
    // A leftover boot disk of a node (kept by hand), labelled for it, and a same-named one of nobody.
    gce.putDisk(`${platform}-web-0004`, { labels: { kubedos: 'node', 'kubedos-node': `${platform}-web-0004` } });
    await d.destroy(req.nodeId, {});
    expect(gce.instances()).not.toContain(name);
    expect(gce.disks()).not.toContain(name);
    await d.destroy(`${platform}-web-0004`, {});
    expect(gce.disks()).not.toContain(`${platform}-web-0004`);
    expect(gce.instances()).toContain('someone-elses');
    expect(gce.disks()).toContain('someone-elses');
    await d.destroy(req.nodeId, {}); // absent: not an error

    gce.putInstance(`${platform}-web-0009`, { labels: { owner: 'me' } });
    await expect(d.create(request(`${platform}-web-0009`, 'web-0009', labels('web')), {})).rejects.toBeInstanceOf(GcpResourceNotOwnedError);
    const deletes = calls('DELETE', /./).length;
    await d.destroy(`${platform}-web-0009`, {});
    expect(calls('DELETE', /./).length).toBe(deletes);
    expect(gce.instances()).toContain(`${platform}-web-0009`);
  });

  test('errors: throttling and quota are retryable; permission and validation are not, each naming what to fix', async () => {
    const classify = async (nodeId: string, host: string, setup: () => void, o: Record<string, unknown> = {}) => {
      gce.clearFaults();
      setup();
      const err = await driver(o).create(request(nodeId, host, labels('err')), {}).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(KubedosError);
      return err as KubedosError & { field?: string; code?: string };
    };
    const throttled = await classify(`${platform}-err-0001`, 'err-0001', () => gce.inject({ method: 'POST', path: /\/instances$/, status: 403, reason: 'rateLimitExceeded', domain: 'usageLimits', message: 'Rate Limit Exceeded', times: 20 }));
    expect(throttled).toBeInstanceOf(GcpThrottledError);
    expect(throttled.retryable).toBe(true);
    // Quota, as the insert operation reports it.
    gce.clearFaults();
    gce.failInsert(instanceNameOf(`${platform}-err-0002`), 'QUOTA_EXCEEDED', "Quota 'CPUS' exceeded.  Limit: 8.0 in region europe-west4.", 403);
    const quota = await classify(`${platform}-err-0002`, 'err-0002', () => undefined);
    expect(quota).toBeInstanceOf(GcpQuotaError);
    expect(quota.retryable).toBe(true);
    expect(quota.hint).toMatch(/quota in project kubedos-test-proj/);
    const denied = await classify(`${platform}-err-0003`, 'err-0003', () => gce.inject({ method: 'POST', path: /\/instances$/, status: 403, reason: 'forbidden', message: "Required 'compute.instances.create' permission for 'projects/kubedos-test-proj/zones/europe-west4-a/instances/x'" }));
    expect(denied).toBeInstanceOf(GcpPermissionError);
    expect(denied.retryable).toBe(false);
    expect(denied.hint).toMatch(/roles\/compute\.instanceAdmin\.v1/);
    // A machine type the zone does not have: refused by the stand-in's own check, as Compute Engine does.
    const badType = await classify(`${platform}-err-0004`, 'err-0004', () => undefined, { machineType: 'e2-nope' });
    expect(badType).toBeInstanceOf(GcpInvalidRequestError);
    expect(badType.retryable).toBe(false);
    expect(badType.field).toBe('machineType');
    expect(badType.hint).toMatch(/fix machineType/);
    const badNet = await classify(`${platform}-err-0005`, 'err-0005', () => undefined, { network: 'nope' });
    expect(badNet).toBeInstanceOf(GcpInvalidRequestError);
    expect(badNet.field).toBe('network');
    gce.clearFaults();
    for (const n of ['0001', '0002', '0003', '0004', '0005']) await driver().destroy(`${platform}-err-${n}`, {});
    expect(gce.instances().filter((i) => i.startsWith(`${platform}-err-`))).toEqual([]);
  });
});

describeCloudFleet({
  title: 'a fleet of 2 is deployed, becomes ready on the serial port, and teardown leaves nothing',
  label: 'gcp (Compute Engine stand-in, fake-gcs-server)',
  target: { name: 'gce', spec },
  driver,
  artifact: () => artifact,
  artifactFormat: 'gce',
  digest: DIGEST,
  authorizedKeys: KEYS,
  leftovers: (platform) => [...gce.instances(), ...gce.disks()].filter((n) => n.startsWith(platform)),
});
