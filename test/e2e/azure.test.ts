/**
 * The azure driver against REAL Azurite (Microsoft's storage emulator, started here on loopback,
 * telemetry off) for the page-blob upload, and an AZURE RESOURCE MANAGER STAND-IN
 * (test/support/azure-standin: HTTPS, ARM's wire format and long-running operations, bodies
 * checked against the API shapes; no ARM or Compute emulator exists) for images, VMs, NICs,
 * public IPs and disks. What is real: Microsoft's SDKs and DefaultAzureCredential (it gets its
 * token from the stand-in's App Service managed-identity endpoint), the driver, the image's own
 * Azure reader (run with bash on what the VM's provisioning media would hold), and, at the end, the
 * fleet workflow on the dev server with a cloud worker on its own queue. The VHD is the shared test
 * image's `azure` artifact.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';
import { AzureInvalidRequestError, AzurePermissionError, AzureProvisioningError, AzureQuotaError, AzureResourceNotOwnedError, AzureThrottledError, KubedosError } from '../../src/errors';
import { AZURE_CHASSIS_ASSET_TAG, AZURE_READER } from '../../src/foundry/azure-reader';
import { parseExtents } from '../../src/foundry/files';
import { dataExtents } from '../../src/foundry/tools/data-extents';
import { azure, type AzureTargetSpec } from '../../src/targets/azure';
import { AzureDriver, imageNameOf, vmNameOf } from '../../src/targets/azure/driver';
import { MERGE_GAP } from '../../src/targets/azure/page-blob';
import { resumedOperation, type CreateNodeRequest, type DriverContext, type NodeLabels, type PreparedImage, type ProgressDetail } from '../../src/targets/driver';
import { generateIdentity, publicPart } from '../../src/targets/identity';
import { renderNocloud } from '../../src/targets/nocloud';
import { startAzureStandin, type AzureStandin } from '../support/azure-standin';
import { describeCloudFleet } from '../support/cloud-fleet';
import { builtImage } from '../support/images';
import { runReader } from '../support/reader-scene';
import { countingProxy, startAzurite, type RunningEmulator } from '../support/storage-emulators';

jest.setTimeout(15 * 60_000);

const SUB = '11111111-2222-4333-8444-555555555555';
const RG = 'kubedos-nodes';
const LOCATION = 'westeurope';
const SUBNET = `/subscriptions/${SUB}/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/vnet/subnets/nodes`;
const KEYS = ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBx2k1yq5cXzRk0m9YV0l3cJvY8QdYgZ0m2l9ZsV1c3d ops@example'];
const DIGEST = 'e'.repeat(64);

let tmp: string;
let azurite: RunningEmulator & { connectionString(endpoint?: string): string };
let proxy: Awaited<ReturnType<typeof countingProxy>>;
let arm: AzureStandin;
let artifact: { format: string; path: string; sha256: string; size: number };
let prepared: PreparedImage;
const savedEnv: Record<string, string | undefined> = {};
const platform = `p${randomUUID().slice(0, 6)}`;

function spec(overrides: Record<string, unknown> = {}): AzureTargetSpec {
  return azure.schema.parse({ type: 'azure', subscription: SUB, resourceGroup: RG, location: LOCATION, storage: { account: 'devstoreaccount1' }, subnet: SUBNET, ...overrides }) as AzureTargetSpec;
}
function driver(overrides: Record<string, unknown> = {}): AzureDriver {
  return new AzureDriver('az', spec(overrides), { stateDir: path.join(tmp, 'state') }, { pollIntervalMs: 200 });
}
function labels(fleet: string, o: Partial<NodeLabels> = {}): NodeLabels {
  return { platform, fleet, generation: 1, image: 'kubedos-test', imageDigest: DIGEST, ...o };
}
function request(nodeId: string, hostname: string, l: NodeLabels): CreateNodeRequest {
  return { nodeId, labels: l, image: prepared, identity: generateIdentity(hostname), authorizedKeys: KEYS };
}
const isPutPage = (r: { method: string; url: string; status?: number }) => r.method === 'PUT' && /[?&]comp=page\b/.test(r.url) && r.status === 201;
const putPages = () => proxy.requests.filter(isPutPage);
const rangeOf = (r: { headers: Record<string, unknown> }) => {
  const m = /bytes=(\d+)-(\d+)/.exec(String(r.headers['x-ms-range'] ?? r.headers.range ?? ''));
  return [Number(m![1]), Number(m![2]) + 1] as [number, number];
};
const armCalls = (method: string, re: RegExp) => arm.requests.filter((r) => r.method === method && re.test(r.path));

/** Which 512-byte pages of the file hold data, found here independently of the driver (one flag per page). */
async function nonZeroPagesOf(file: string, size: number): Promise<Uint8Array> {
  const pages = new Uint8Array(Math.ceil(size / 512));
  const fh = await fs.open(file, 'r');
  const buf = Buffer.alloc(1 << 20);
  try {
    for (const [a, b] of parseExtents((await dataExtents(file)).stdout, size)) {
      for (let pos = a - (a % 512); pos < b; pos += buf.length) {
        const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, b - pos), pos);
        for (let off = 0; off < bytesRead; off += 512) {
          const page = buf.subarray(off, Math.min(off + 512, bytesRead));
          if (page.some((x) => x !== 0)) pages[(pos + off) / 512] = 1;
        }
      }
    }
  } finally {
    await fh.close();
  }
  return pages;
}

/** The managed image's blob, as Azure reads it: a page blob holding a fixed VHD (footer cookie, type 2, size). */
async function checkVhdBlob(blobUri: string): Promise<string | undefined> {
  const name = decodeURIComponent(new URL(blobUri).pathname.split('/').slice(3).join('/'));
  const blob = BlobServiceClient.fromConnectionString(azurite.connectionString()).getContainerClient('kubedos-images').getPageBlobClient(name);
  const props = await blob.getProperties().catch(() => undefined);
  if (!props) return `The blob ${blobUri} does not exist.`;
  if (props.blobType !== 'PageBlob') return `The blob ${blobUri} is not a page blob.`;
  const size = props.contentLength!;
  if ((size - 512) % (1024 * 1024) !== 0) return `The VHD ${blobUri} has an unsupported virtual size of ${size - 512} bytes. The size must be a whole number (in MBs).`;
  const footer = await blob.downloadToBuffer(size - 512, 512);
  if (footer.toString('latin1', 0, 8) !== 'conectix' || footer.readUInt32BE(60) !== 2) return `The VHD ${blobUri} is not a fixed VHD.`;
  return undefined;
}

beforeAll(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'kubedos-azure-test-'));
  const img = await builtImage();
  const entry = img.manifest.artifacts.find((a) => a.format === 'azure')!;
  artifact = { format: 'azure', path: path.join(img.dir, entry.file), sha256: entry.sha256, size: entry.size };
  azurite = await startAzurite();
  proxy = await countingProxy(`http://127.0.0.1:${azurite.port}`);
  arm = await startAzureStandin({ subscription: SUB, location: LOCATION, resourceGroups: [RG], subnets: [SUBNET], checkBlob: checkVhdBlob });
  const env = { ...arm.env, AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString(`${proxy.url}/devstoreaccount1`) };
  for (const [k, v] of Object.entries(env)) {
    savedEnv[k] = process.env[k];
    process.env[k] = v;
  }
});

afterAll(async () => {
  for (const [k, v] of Object.entries(savedEnv)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  await arm?.close();
  await proxy?.close();
  await azurite?.stop();
  await fs.rm(tmp, { recursive: true, force: true });
});

describe('prepare', () => {
  test('the VHD goes up as a sparse page blob (zero pages never sent), a killed upload resumes from the page ranges present, and a generation 2 managed image is made once, found again by its tags', async () => {
    const d = driver();
    const source = { name: 'kubedos-test', digest: DIGEST, artifact };
    const pages = await nonZeroPagesOf(artifact.path, artifact.size);
    const dataBytes = pages.reduce((n, p) => n + p, 0) * 512;
    const sentBytes = () => putPages().reduce((n, r) => n + r.bytes, 0);

    // 1. Killed partway (the activity cancelled, the worker gone): some pages are up, not all.
    const abort = new AbortController();
    const ctx1: DriverContext = { signal: abort.signal, progress: () => sentBytes() > dataBytes * 0.4 && abort.abort() };
    await expect(d.prepare(source, ctx1)).rejects.toThrow();
    // Requests the kill cut off may still be on their way into Azurite: let them land (or fail) first.
    for (let i = 0; i < 100 && proxy.requests.some((r) => r.status === undefined); i++) await new Promise((r) => setTimeout(r, 100));
    const sentBefore = proxy.requests.length;
    const first = putPages().map(rangeOf);
    const firstBytes = first.reduce((n, [a, b]) => n + b - a, 0);
    expect(firstBytes).toBeGreaterThan(0);
    expect(firstBytes).toBeLessThan(dataBytes);
    expect(armCalls('PUT', /\/images\//)).toEqual([]);

    // 2. Resumed by a fresh attempt: only the missing runs are sent, and the image is made.
    const heartbeats: ProgressDetail[] = [];
    const resumedAt = Date.now();
    prepared = await d.prepare(source, { progress: (p) => heartbeats.push(p) });
    const resumeMs = Date.now() - resumedAt;
    const second = proxy.requests.slice(sentBefore).filter(isPutPage).map(rangeOf);
    const secondBytes = second.reduce((n, [a, b]) => n + b - a, 0);
    expect(secondBytes).toBeGreaterThan(0);
    // Over both attempts: every non-zero page sent exactly once (no range twice), and zeros only
    // inside runs of data less than MERGE_GAP apart: every zero region of MERGE_GAP or more is skipped.
    const all = [...first, ...second].sort((x, y) => x[0] - y[0]);
    const sentPages = new Uint8Array(pages.length);
    for (const [a, b] of all) for (let p = a / 512; p < b / 512; p++) sentPages[p]! += 1;
    const twice = sentPages.filter((n) => n > 1).length;
    const unsent = pages.filter((n, p) => n === 1 && sentPages[p] === 0).length;
    expect({ twice, unsent }).toEqual({ twice: 0, unsent: 0 });
    let longestZeroRunSent = 0;
    let edgesOnData = true;
    for (const [a, b] of all) {
      edgesOnData &&= pages[a / 512] === 1 && pages[b / 512 - 1] === 1;
      let zeros = 0;
      for (let p = a / 512; p < b / 512; p++) {
        zeros = pages[p] ? 0 : zeros + 512;
        longestZeroRunSent = Math.max(longestZeroRunSent, zeros);
      }
    }
    expect(edgesOnData).toBe(true);
    expect(longestZeroRunSent).toBeLessThan(MERGE_GAP);
    console.log(`azure page blob: ${artifact.size} bytes, ${dataBytes} in non-zero pages (${((100 * dataBytes) / artifact.size).toFixed(1)}%); sent ${firstBytes} before the kill and ${secondBytes} after it (${resumeMs} ms) in ${putPages().length} Put Page requests, ${firstBytes + secondBytes - dataBytes} of them zeros between nearby runs`);

    // What Azurite holds: exactly those pages, with the file's bytes.
    const blob = BlobServiceClient.fromConnectionString(azurite.connectionString()).getContainerClient('kubedos-images').getPageBlobClient(`${artifact.sha256}.vhd`);
    const ranges: Array<[number, number]> = [];
    for await (const r of blob.listPageRanges()) ranges.push([r.start, r.end + 1]);
    expect(ranges.reduce((n, [a, b]) => n + b - a, 0)).toBe(firstBytes + secondBytes);
    const fh = await fs.open(artifact.path, 'r');
    try {
      for (const [a, b] of ranges.filter((_, i) => i % Math.ceil(ranges.length / 40) === 0 || i === ranges.length - 1)) {
        const want = Buffer.alloc(b - a);
        await fh.read(want, 0, b - a, a);
        expect((await blob.downloadToBuffer(a, b - a)).equals(want)).toBe(true);
      }
    } finally {
      await fh.close();
    }
    expect((await blob.getProperties()).metadata).toEqual({ kubedos_sha256: artifact.sha256, kubedos_complete: 'true' });

    // The managed image: generation 2, Linux, generalized, from that blob, tagged with the digests.
    const [put] = armCalls('PUT', /\/images\//);
    expect(put!.path).toBe(`/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.Compute/images/${imageNameOf('kubedos-test', artifact.sha256)}`);
    expect(put!.apiVersion).toBe('2026-03-01');
    expect(put!.body).toEqual({
      location: LOCATION,
      tags: { kubedos: 'image', 'kubedos-image': 'kubedos-test', 'kubedos-image-digest': DIGEST, 'kubedos-sha256': artifact.sha256 },
      properties: { hyperVGeneration: 'V2', storageProfile: { osDisk: { osType: 'Linux', osState: 'Generalized', blobUri: `${proxy.url}/devstoreaccount1/kubedos-images/${artifact.sha256}.vhd`, storageAccountType: 'Standard_LRS' } } },
    });
    expect(prepared).toEqual({ digest: DIGEST, location: `/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.Compute/images/${imageNameOf('kubedos-test', artifact.sha256)}` });
    // The image operation was heartbeated with its poller state.
    expect(heartbeats.some((h) => resumedOperation(h) && JSON.parse(resumedOperation(h)!).azure === `create-image:${imageNameOf('kubedos-test', artifact.sha256)}`)).toBe(true);

    // 3. A repeat: no page sent, no image made; found by tag.
    const pagesBefore = putPages().length;
    expect(await driver().prepare(source, {})).toEqual(prepared);
    expect(putPages().length).toBe(pagesBefore);
    expect(armCalls('PUT', /\/images\//)).toHaveLength(1);
  });
});

describe('nodes', () => {
  test('create: a NIC on the subnet and a VM whose body is the API\'s, with the identity as custom data; the image\'s reader applies it from ovf-env.xml and reports ready', async () => {
    const d = driver();
    const req = request(`${platform}-web-0001`, 'web-0001', labels('web'));
    const beats: ProgressDetail[] = [];
    const identity = await d.create(req, { progress: (p) => beats.push(p) });
    expect(identity).toEqual(publicPart(req.identity));
    const vmName = vmNameOf(req.nodeId);
    const nicPut = armCalls('PUT', new RegExp(`/networkInterfaces/${vmName}-nic$`))[0]!;
    expect(nicPut.apiVersion).toBe('2025-05-01');
    expect(nicPut.body).toMatchObject({ location: LOCATION, properties: { ipConfigurations: [{ name: 'ipconfig1', properties: { primary: true, subnet: { id: SUBNET }, privateIPAllocationMethod: 'Dynamic' } }] } });
    const vmPut = armCalls('PUT', new RegExp(`/virtualMachines/${vmName}$`))[0]!;
    const body = vmPut.body as { tags: Record<string, string>; properties: Record<string, any> };
    expect(vmPut.apiVersion).toBe('2026-03-01');
    expect(body.properties.hardwareProfile).toEqual({ vmSize: 'Standard_B2s' });
    expect(body.properties.storageProfile).toEqual({ imageReference: { id: prepared.location }, osDisk: { name: `${vmName}-osdisk`, createOption: 'FromImage', caching: 'ReadWrite', deleteOption: 'Delete', managedDisk: { storageAccountType: 'StandardSSD_LRS' } } });
    expect(body.properties.networkProfile.networkInterfaces).toEqual([{ id: expect.stringMatching(new RegExp(`/networkInterfaces/${vmName}-nic$`)), properties: { primary: true, deleteOption: 'Delete' } }]);
    expect(body.properties.osProfile).toMatchObject({ computerName: 'web-0001', adminUsername: 'kubedos', allowExtensionOperations: false, linuxConfiguration: { disablePasswordAuthentication: true, provisionVMAgent: false, ssh: { publicKeys: [{ path: '/home/kubedos/.ssh/authorized_keys', keyData: KEYS[0] }] } } });
    expect(Buffer.from(body.properties.osProfile.customData, 'base64').toString('utf8')).toBe(renderNocloud({ instanceId: req.nodeId, identity: req.identity, authorizedKeys: KEYS })['user-data']);
    expect(body.properties.diagnosticsProfile).toEqual({ bootDiagnostics: { enabled: true } });
    expect(body.tags).toMatchObject({ kubedos: 'node', 'kubedos-node': req.nodeId, 'kubedos-platform': platform, 'kubedos-fleet': 'web', 'kubedos-generation': '1', 'kubedos-image-digest': DIGEST, 'kubedos-host-key': req.identity.hostKeyPublic });
    // The private key is only in the custom data, never in a tag.
    expect(JSON.stringify(body.tags)).not.toContain('PRIVATE KEY');
    // The create operation was heartbeated (a retried activity resumes it).
    expect(beats.some((b) => resumedOperation(b) && JSON.parse(resumedOperation(b)!).azure === `create-vm:${vmName}`)).toBe(true);
    // The OS disk (made by the VM, untagged by Azure) now carries the node's tag.
    expect(arm.resource(RG, `disks/${vmName}-osdisk`)).toMatchObject({ tags: { kubedos: 'node', 'kubedos-node': req.nodeId }, managedBy: expect.stringContaining(`/virtualMachines/${vmName}`) });

    // The guest side: what Azure puts on the provisioning media, read by the image's own reader.
    const guest = await runReader({ dir: tmp, name: '30-azure', script: AZURE_READER, dmi: { chassis_asset_tag: AZURE_CHASSIS_ASSET_TAG, product_uuid: '5E0B3A4C-1D2E-4F60-8A9B-0C1D2E3F4A5B' }, env: { KUBEDOS_AZURE_REPORT: 'none' }, files: { envVar: 'KUBEDOS_AZURE_OVF_DIR', files: { 'ovf-env.xml': arm.ovfEnv(RG, vmName) } } });
    expect(guest.stderr).toBe('');
    expect({ hostname: guest.hostname, hostKeyPublic: guest.hostKeyPublic, hostKeyPrivate: guest.hostKeyPrivate, machineId: guest.machineId }).toEqual({ hostname: 'web-0001', hostKeyPublic: identity.hostKeyPublic, hostKeyPrivate: req.identity.hostKeyPrivate, machineId: identity.machineId });

    await d.start(req.nodeId, {});
    expect(armCalls('POST', /\/start$/)).toEqual([]); // Azure starts what it creates
    expect(await d.readiness(req.nodeId, {})).toBe(true);
    expect(await d.address(req.nodeId, {})).toEqual({ host: expect.stringMatching(/^10\.0\.0\.\d+$/), ports: { 22: 22 } });
    expect(await d.list({ platform, fleet: 'web' }, {})).toEqual([{ nodeId: req.nodeId, labels: req.labels, identity, running: true }]);
  });

  test('a retried create keeps the VM and its identity; a create killed mid-operation is resumed by its operation, not sent again', async () => {
    const d = driver();
    const nodeId = `${platform}-web-0002`;
    const vmName = vmNameOf(nodeId);
    const first = request(nodeId, 'web-0002', labels('web'));
    const abort = new AbortController();
    let last: ProgressDetail | undefined;
    await expect(
      d.create(first, {
        signal: abort.signal,
        progress: (p) => {
          last = p;
          if (resumedOperation(p)) abort.abort();
        },
      }),
    ).rejects.toThrow();
    expect(armCalls('PUT', new RegExp(`/virtualMachines/${vmName}$`))).toHaveLength(1);
    const opId = /operations\/([0-9a-f-]+)/.exec(JSON.parse(resumedOperation(last)!).poller)![1]!;
    const polledBefore = armCalls('GET', new RegExp(`/operations/${opId}$`)).length;

    // The next attempt: a new identity is generated, the heartbeat of the killed one is its `previous`.
    const retry = { ...request(nodeId, 'web-0002', labels('web')) };
    const got = await driver().create(retry, { previous: last });
    expect(got).toEqual(publicPart(first.identity));
    expect(armCalls('PUT', new RegExp(`/virtualMachines/${vmName}$`))).toHaveLength(1);
    expect(armCalls('GET', new RegExp(`/operations/${opId}$`)).length).toBeGreaterThan(polledBefore);
    // And once more, from scratch: still the same VM, nothing sent.
    expect(await driver().create(request(nodeId, 'web-0002', labels('web')), {})).toEqual(publicPart(first.identity));
    expect(armCalls('PUT', new RegExp(`/virtualMachines/${vmName}$`))).toHaveLength(1);
  });

  test('a public IP when the spec asks for one: a Standard static address, on the NIC, as the node\'s address', async () => {
    const d = driver({ publicIp: true });
    const req = request(`${platform}-pub-0001`, 'pub-0001', labels('pub'));
    await d.create(req, {});
    const vmName = vmNameOf(req.nodeId);
    expect(armCalls('PUT', new RegExp(`/publicIPAddresses/${vmName}-ip$`))[0]!.body).toEqual({ location: LOCATION, tags: { kubedos: 'node', 'kubedos-node': req.nodeId }, sku: { name: 'Standard' }, properties: { publicIPAllocationMethod: 'Static', publicIPAddressVersion: 'IPv4' } });
    expect(await d.address(req.nodeId, {})).toEqual({ host: expect.stringMatching(/^20\.50\.0\.\d+$/), ports: { 22: 22 } });
    await d.destroy(req.nodeId, {});
    expect(arm.names(RG, 'publicIPAddresses')).not.toContain(`${vmName}-ip`);
  });

  test('destroy removes the VM, its OS disk and NIC, and nothing else; a VM by that name that is not KubeDos\'s is never touched', async () => {
    const d = driver();
    const req = request(`${platform}-web-0003`, 'web-0003', labels('web'));
    await d.create(req, {});
    const vmName = vmNameOf(req.nodeId);
    arm.put(RG, 'virtualMachines/someone-elses', { tags: { owner: 'me' }, properties: { provisioningState: 'Succeeded' } });
    arm.put(RG, 'networkInterfaces/someone-elses-nic', { properties: { provisioningState: 'Succeeded' } });
    arm.put(RG, 'disks/someone-elses-osdisk', { properties: { provisioningState: 'Succeeded' } });
    await d.destroy(req.nodeId, {});
    expect(arm.names(RG, 'virtualMachines')).not.toContain(vmName);
    expect(arm.names(RG, 'disks')).not.toContain(`${vmName}-osdisk`);
    expect(arm.names(RG, 'networkInterfaces')).not.toContain(`${vmName}-nic`);
    expect(arm.names(RG, 'virtualMachines')).toContain('someone-elses');
    expect(arm.names(RG, 'networkInterfaces')).toContain('someone-elses-nic');
    expect(arm.names(RG, 'disks')).toContain('someone-elses-osdisk');
    await d.destroy(req.nodeId, {}); // absent: not an error
    expect(await d.list({ platform, fleet: 'web' }, {})).not.toContainEqual(expect.objectContaining({ nodeId: req.nodeId }));

    // The name of a node taken by a foreign VM: create refuses, destroy leaves it alone.
    arm.put(RG, `virtualMachines/${platform}-web-0009`, { tags: { owner: 'me' }, properties: { provisioningState: 'Succeeded' } });
    await expect(d.create(request(`${platform}-web-0009`, 'web-0009', labels('web')), {})).rejects.toBeInstanceOf(AzureResourceNotOwnedError);
    const deletes = armCalls('DELETE', /./).length;
    await d.destroy(`${platform}-web-0009`, {});
    expect(armCalls('DELETE', /./).length).toBe(deletes);
    expect(arm.names(RG, 'virtualMachines')).toContain(`${platform}-web-0009`);
  });

  test('errors: throttling and quota are retryable; permission, validation and a guest that never reports ready are not, each naming what to fix', async () => {
    const d = driver();
    const classify = async (nodeId: string, host: string, setup: () => void, o: Record<string, unknown> = {}) => {
      arm.clearFaults();
      setup();
      const err = await (o.subnet ? driver(o) : d).create(request(nodeId, host, labels('err')), {}).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(KubedosError);
      return err as KubedosError & { field?: string; code?: string };
    };
    const throttled = await classify(`${platform}-err-0001`, 'err-0001', () => arm.inject({ method: 'PUT', path: /\/virtualMachines\//, status: 429, code: 'TooManyRequests', message: 'The request is being throttled.', times: 10, retryAfter: 0 }));
    expect(throttled).toBeInstanceOf(AzureThrottledError);
    expect(throttled.retryable).toBe(true);
    const quota = await classify(`${platform}-err-0002`, 'err-0002', () => arm.inject({ method: 'PUT', path: /\/virtualMachines\//, status: 409, code: 'OperationNotAllowed', message: 'Operation could not be completed as it results in exceeding approved standardBSFamily Cores quota. Current Limit: 4.' }));
    expect(quota).toBeInstanceOf(AzureQuotaError);
    expect(quota.retryable).toBe(true);
    expect(quota.hint).toMatch(/quota .* westeurope/);
    const denied = await classify(`${platform}-err-0003`, 'err-0003', () => arm.inject({ method: 'PUT', path: /\/networkInterfaces\//, status: 403, code: 'AuthorizationFailed', message: "The client 'x' does not have authorization to perform action 'Microsoft.Network/networkInterfaces/write'." }));
    expect(denied).toBeInstanceOf(AzurePermissionError);
    expect(denied.retryable).toBe(false);
    expect(denied.hint).toMatch(/Contributor .* kubedos-nodes/);
    // A subnet that does not exist: refused by the stand-in's own reference check, as ARM does.
    const badSubnet = await classify(`${platform}-err-0004`, 'err-0004', () => undefined, { subnet: SUBNET.replace(/nodes$/, 'nope') });
    expect(badSubnet).toBeInstanceOf(AzureInvalidRequestError);
    expect(badSubnet.retryable).toBe(false);
    expect(badSubnet.field).toBe('subnet');
    expect(badSubnet.hint).toMatch(/fix subnet/);
    // Named by ARM's target (as Azure sends it) or, without one, by the message alone.
    const badSize = await classify(`${platform}-err-0005`, 'err-0005', () => arm.inject({ method: 'PUT', path: /\/virtualMachines\//, status: 400, code: 'InvalidParameter', message: 'The value Standard_Nope provided for the VM size is not valid.', target: 'vmSize' }));
    expect(badSize).toBeInstanceOf(AzureInvalidRequestError);
    expect(badSize.field).toBe('vmSize');
    const badSizeUntargeted = await classify(`${platform}-err-0007`, 'err-0007', () => arm.inject({ method: 'PUT', path: /\/virtualMachines\//, status: 400, code: 'InvalidParameter', message: 'The value Standard_Nope provided for the VM size is not valid.' }));
    expect(badSizeUntargeted.field).toBe('vmSize');
    // The guest never reported ready: Azure fails the create operation.
    const vmName = vmNameOf(`${platform}-err-0006`);
    const timedOut = await classify(`${platform}-err-0006`, 'err-0006', () => arm.failProvisioning(vmName, 'OSProvisioningTimedOut', 'OS Provisioning for VM did not finish in the allotted time.'));
    expect(timedOut).toBeInstanceOf(AzureProvisioningError);
    expect(timedOut.retryable).toBe(false);
    expect(timedOut.hint).toMatch(/WireServer/);
    arm.clearFaults();
    // A retried create finds the failed VM and says so again (the fleet destroys it and tries a fresh one).
    await expect(d.create(request(`${platform}-err-0006`, 'err-0006', labels('err')), {})).rejects.toBeInstanceOf(AzureProvisioningError);
    await d.destroy(`${platform}-err-0006`, {});
    for (const n of ['0001', '0002', '0003', '0004', '0005', '0007']) await d.destroy(`${platform}-err-${n}`, {});
    expect(arm.names(RG, 'networkInterfaces').filter((n) => n.startsWith(`${platform}-err-`))).toEqual([]);
  });
});

describeCloudFleet({
  title: 'a fleet of 2 is deployed, becomes ready on the boot-diagnostics serial logs, and teardown leaves nothing',
  label: 'azure (ARM stand-in, Azurite)',
  target: { name: 'az', spec },
  driver,
  artifact: () => artifact,
  artifactFormat: 'azure',
  digest: DIGEST,
  authorizedKeys: KEYS,
  leftovers: (platform) => ['virtualMachines', 'networkInterfaces', 'disks'].flatMap((type) => arm.names(RG, type).filter((n) => n.startsWith(platform))),
});
