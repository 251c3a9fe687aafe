/**
 * The vSphere driver against VMware's own simulator, vcsim (govmomi, the version govc has), in
 * vCenter mode and as a standalone ESXi host, driven through the real govc with the shared test
 * image's OVA (test/support/images.ts). What is real: govc, the SOAP API as vcsim implements it
 * (OVA import through an NFC lease, snapshots, templates, linked and full clones, extraConfig,
 * annotations, power, destroy, the TLS certificate and login), the driver, and the fleet workflow
 * on the dev server with a vsphere-pool worker on its own queue. What vcsim cannot do: run a guest.
 * Where a guest's part is needed (setting guestinfo.kubedos.ready, an IPv4 through VMware Tools)
 * THE TEST PLAYS THE GUEST, and the tests say so; once, the image's own guestinfo reader and
 * readiness hook run as the guest, through a vmware-rpctool stand-in that reads and writes the
 * VM's extraConfig in vcsim. That guests boot from the OVA/VMDK is proven by the QEMU boot tests.
 */
import { randomUUID } from 'node:crypto';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, promises as fs, readFileSync, symlinkSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Worker } from '@temporalio/worker';
import { createDeployActivities, type TargetRef } from '../../activities/deploy';
import { CancelledError, NodeAddressUnknownError, NodeImageConflictError, TargetNodeNotFoundError, VsphereCertificateError, VsphereCredentialsError, VsphereInventoryError, VsphereNotOwnedError } from '../../src/errors';
import { GUESTINFO_READER, GUESTINFO_READY } from '../../src/foundry/guestinfo-reader';
import { logger } from '../../src/log';
import type { CreateNodeRequest, ImageSource, NodeLabels, PreparedImage } from '../../src/targets/driver';
import { generateIdentity, publicPart } from '../../src/targets/identity';
import { renderNocloud } from '../../src/targets/nocloud';
import { createDriver } from '../../src/targets';
import { VsphereDriver } from '../../src/targets/vsphere/driver';
import { vsphere, type VsphereTargetSpec } from '../../src/targets/vsphere/index';
import { cloneName } from '../../src/targets/vsphere/records';
import { deployUpdate, fleetWorkflowId, scaleUpdate, teardownSignal, type FleetInput } from '../../workflows/fleet-api';
import { readyCount, waitForStatus } from '../support/fleet';
import { builtImage } from '../support/images';
import { scratchRoot } from '../support/scratch-root';
import { connectTestEnv, testPoolWorker, type TestEnv } from '../support/temporal';
import { extraConfigOf, GOVC, playGuests, recordingGovc, startVcsim, VCSIM_PASSWORD, VCSIM_USER, type GuestPlayer, type Vcsim } from '../support/vcsim';

jest.setTimeout(10 * 60_000);

const RPCTOOL = path.join(__dirname, '..', 'support', 'rpctool-standin', 'vmware-rpctool');
const id = randomUUID().slice(0, 6);
const platform = `v${id}`;
// The names the target's credentials point at: this worker's environment.
const USER_VAR = `KUBEDOS_TEST_VSPHERE_USER_${id}`;
const PASSWORD_VAR = `KUBEDOS_TEST_VSPHERE_PASSWORD_${id}`;
const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBx2k1yq5cXzRk0m9YV0l3cJvY8QdYgZ0m2l9ZsV1c3d kubedos-test';

let tmp: string;
let vc: Vcsim;
let source: ImageSource;
let qcow2: string;
const govc = { path: GOVC, calls: (): ReturnType<ReturnType<typeof recordingGovc>['calls']> => [] };
const players: GuestPlayer[] = [];

/** A target spec as a vCenter user writes it, parsed by the real schema (defaults filled in). */
function spec(sim: Vcsim, raw: Record<string, unknown> = {}): VsphereTargetSpec {
  return vsphere.schema.parse({
    type: 'vsphere',
    url: sim.url,
    credentials: { username: { env: USER_VAR }, password: { env: PASSWORD_VAR } },
    tls: { thumbprint: sim.thumbprint },
    ...(raw.esx ? {} : { datacenter: 'DC0', cluster: 'DC0_C0' }),
    datastore: 'LocalDS_0',
    folder: 'kubedos',
    network: 'VM Network',
    memory: '1GiB',
    ...Object.fromEntries(Object.entries(raw).filter(([k]) => k !== 'esx')),
  }) as VsphereTargetSpec;
}

function driver(sim: Vcsim, raw: Record<string, unknown> = {}, stateDir = path.join(tmp, 'state', randomUUID().slice(0, 8))): VsphereDriver {
  return new VsphereDriver('vc', spec(sim, raw), { stateDir }, { govc: govc.path });
}

function labelsOf(fleet: string, overrides: Partial<NodeLabels> = {}): NodeLabels {
  return { platform, fleet, generation: 1, image: 'kubedos-test', imageDigest: 'd'.repeat(64), ...overrides };
}

function request(nodeId: string, hostname: string, labels: NodeLabels, image: PreparedImage): CreateNodeRequest {
  return { nodeId, labels, image, identity: generateIdentity(hostname), authorizedKeys: [KEY] };
}

/** VM names directly in a vcsim folder. */
async function vmNames(sim: Vcsim, folder: string): Promise<string[]> {
  const out = await sim.govc(['find', folder, '-maxdepth', '1', '-type', 'm']).catch(() => '');
  return out.split('\n').filter(Boolean).map((p) => p.slice(p.lastIndexOf('/') + 1)).sort();
}

/** SOAP requests of one method in the trace, as text. */
function requests(sim: Vcsim, method: string): string[] {
  return sim
    .trace()
    .split('Request: ')
    .map((chunk) => chunk.split('\nResponse: ')[0]!)
    .filter((body) => body.includes(`<${method} `) || body.includes(`<${method}>`));
}

async function waitUntil(what: string, ok: () => Promise<boolean> | boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-vsphere-'));
  const recorder = recordingGovc(tmp);
  govc.path = recorder.path;
  govc.calls = recorder.calls;
  process.env[USER_VAR] = VCSIM_USER;
  process.env[PASSWORD_VAR] = VCSIM_PASSWORD;
  const [img, sim] = await Promise.all([builtImage(), startVcsim({ trace: true })]);
  vc = sim;
  qcow2 = img.artifacts.qcow2!;
  const ova = img.manifest.artifacts.find((a) => a.format === 'ova')!;
  source = { name: img.manifest.image.name, digest: 'e'.repeat(64), artifact: { format: 'ova', sha256: ova.sha256, size: ova.size, path: img.artifacts.ova! } };
});

afterAll(async () => {
  for (const p of players) await p.stop();
  await vc?.stop();
  delete process.env[USER_VAR];
  delete process.env[PASSWORD_VAR];
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
  // vcsim's datastore folders went with its own TMPDIR.
  expect(vc && existsSync(vc.dir)).toBe(false);
});

test('the OVA vcsim imports carries the very disk the QEMU boot test boots (vcsim keeps no disk bytes)', async () => {
  const dir = await fs.mkdtemp(path.join(tmp, 'ova-'));
  const names = execFileSync('tar', ['-tf', source.artifact!.path], { encoding: 'utf8' }).trim().split('\n');
  const disk = names.find((n) => n.endsWith('.vmdk'))!;
  execFileSync('tar', ['-xf', source.artifact!.path, '-C', dir, disk]);
  expect(execFileSync('qemu-img', ['compare', '-f', 'vmdk', '-F', 'qcow2', path.join(dir, disk), qcow2], { encoding: 'utf8' })).toContain('Images are identical');
  await fs.rm(dir, { recursive: true, force: true });
});

describe('vCenter (vcsim)', () => {
  let prepared: PreparedImage;

  test('TLS: a wrong thumbprint is refused before anything is made; the pin, a CA file and (loudly) insecure connect', async () => {
    const wrong = driver(vc, { folder: 'kubedos-tls', tls: { thumbprint: 'AB:'.repeat(31) + 'CD' } });
    await expect(wrong.list({}, {})).rejects.toBeInstanceOf(VsphereCertificateError);
    await expect(wrong.prepare(source, {})).rejects.toThrow(/refusing the certificate of 127\.0\.0\.1:\d+: its thumbprint is not the pinned tls\.thumbprint/);
    // A pin is the only trust: a SHA-1 pin of another certificate is refused just the same.
    await expect(driver(vc, { folder: 'kubedos-tls', tls: { thumbprint: '01:'.repeat(19) + '02' } }).list({}, {})).rejects.toBeInstanceOf(VsphereCertificateError);
    expect(await vmNames(vc, '/DC0/vm/kubedos-tls')).toEqual([]);
    expect(await vc.govc(['find', '/DC0/vm', '-type', 'f', '-name', 'kubedos-tls'])).toBe('');

    expect(await driver(vc, { folder: 'kubedos-tls', tls: { caFile: vc.caFile } }).list({}, {})).toEqual([]);
    const warn = jest.spyOn(logger, 'warn');
    try {
      expect(await driver(vc, { folder: 'kubedos-tls', tls: { insecure: true } }).list({}, {})).toEqual([]);
      expect(warn).toHaveBeenCalledWith(expect.anything(), expect.stringMatching(/tls\.insecure is set: the vCenter\/ESXi certificate is NOT verified/));
    } finally {
      warn.mockRestore();
    }
    // A CA that did not sign vCenter's certificate is refused too.
    const otherCa = path.join(tmp, 'other-ca.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', '/dev/null', '-out', otherCa, '-days', '1', '-subj', '/CN=other'], { stdio: 'ignore' });
    await expect(driver(vc, { folder: 'kubedos-tls', tls: { caFile: otherCa } }).list({}, {})).rejects.toBeInstanceOf(VsphereCertificateError);
  });

  test('credentials are read on the worker from the names the spec gives: a wrong password or a missing variable is refused', async () => {
    const badVar = `KUBEDOS_TEST_VSPHERE_BAD_${id}`;
    process.env[badVar] = 'not-the-password';
    try {
      await expect(driver(vc, { credentials: { username: VCSIM_USER, password: { env: badVar } } }).list({}, {})).rejects.toThrow(VsphereCredentialsError);
    } finally {
      delete process.env[badVar];
    }
    await expect(driver(vc, { credentials: { username: VCSIM_USER, password: { env: badVar } } }).list({}, {})).rejects.toThrow(new RegExp(`environment variable ${badVar} is not set on this worker`));
    const file = path.join(tmp, 'password');
    await fs.writeFile(file, `${VCSIM_PASSWORD}\n`, { mode: 0o600 });
    expect(await driver(vc, { credentials: { username: { env: USER_VAR }, password: { file } } }).list({}, {})).toEqual([]);
  });

  test('inventory names are checked: one that does not exist is an error naming the field and what exists', async () => {
    await expect(driver(vc, { datastore: 'nope' }).list({}, {})).rejects.toThrow(VsphereInventoryError);
    await expect(driver(vc, { datastore: 'nope' }).list({}, {})).rejects.toMatchObject({ field: 'datastore', candidates: ['LocalDS_0'] });
    await expect(driver(vc, { cluster: 'DC9' }).list({}, {})).rejects.toMatchObject({ field: 'cluster', candidates: ['DC0_C0'] });
    await expect(driver(vc, { network: 'prod' }).list({}, {})).rejects.toMatchObject({ field: 'network', candidates: expect.arrayContaining(['VM Network', 'DC0_DVPG0']) });
    await expect(driver(vc, { resourcePool: 'kubedos' }).list({}, {})).rejects.toMatchObject({ field: 'resourcePool' });
    await expect(driver(vc, { datacenter: 'DC7' }).list({}, {})).rejects.toMatchObject({ field: 'datacenter', candidates: ['DC0'] });
    // Without a cluster or host the placement is ambiguous here (a cluster and a standalone host).
    await expect(driver(vc, { cluster: undefined }).list({}, {})).rejects.toMatchObject({ field: 'cluster', value: undefined });
  });

  test('the registry builds the vsphere driver from a spec', async () => {
    const d = await createDriver('vc', spec(vc), { stateDir: path.join(tmp, 'state', 'registry') });
    expect(d).toBeInstanceOf(VsphereDriver);
  });

  test('prepare imports the OVA once per digest as a template named by it: snapshot, template, recorded digest', async () => {
    const d = driver(vc);
    const imports = () => requests(vc, 'ImportVApp').length;
    const before = imports();
    prepared = await d.prepare(source, {});
    const sha = source.artifact!.sha256;
    expect(prepared).toEqual({ digest: source.digest, location: `/DC0/vm/kubedos/kubedos-image-${sha}` });
    expect(imports()).toBe(before + 1);
    const props = await vc.props(prepared.location, 'config.template', 'config.annotation', 'snapshot.rootSnapshotList');
    expect(props['config.template']).toBe(true);
    expect(JSON.parse(props['config.annotation'] as string)).toMatchObject({ kubedos: 1, kind: 'image', sha256: sha, image: 'kubedos-test', digest: source.digest, state: 'ready' });
    expect((props['snapshot.rootSnapshotList'] as { _value: Array<{ name: string }> })._value.map((s) => s.name)).toEqual(['kubedos-base']);
    expect(await vmNames(vc, '/DC0/vm/kubedos')).toEqual([`kubedos-image-${sha}`]);

    // Again, from another worker (a fresh driver) and for another publication of the same bytes: nothing imported.
    expect(await driver(vc).prepare({ ...source, digest: 'f'.repeat(64) }, {})).toEqual({ digest: 'f'.repeat(64), location: prepared.location });
    expect(imports()).toBe(before + 1);
    // Two prepares at once in one worker: one import.
    const d2 = driver(vc, { folder: 'kubedos-twice' });
    await Promise.all([d2.prepare(source, {}), d2.prepare(source, {})]);
    expect(imports()).toBe(before + 2);
    expect(await vmNames(vc, '/DC0/vm/kubedos-twice')).toEqual([`kubedos-image-${sha}`]);
  });

  test('an import killed half-way is found and removed before the retry; a live import elsewhere is left alone', async () => {
    const folder = '/DC0/vm/kubedos-killed';
    const sha = source.artifact!.sha256;
    const first = driver(vc, { folder: 'kubedos-killed' });
    const abort = new AbortController();
    const importing = first.prepare(source, { signal: abort.signal });
    // Kill it (govc, through the runner's signal) once the import's VM exists, while the disk uploads.
    await waitUntil('the import to start', async () => (await vmNames(vc, folder)).some((n) => n.startsWith('kubedos-import-')), 60_000);
    abort.abort();
    await expect(importing).rejects.toBeInstanceOf(CancelledError);
    const [partial] = await vmNames(vc, folder);
    expect(partial).toMatch(new RegExp(`^kubedos-import-${sha.slice(0, 16)}-[0-9a-f]{8}$`));
    const partialRecord = JSON.parse((await vc.props(`${folder}/${partial}`, 'config.annotation'))['config.annotation'] as string);
    expect(partialRecord).toMatchObject({ kind: 'image', state: 'importing', owner: expect.stringContaining(`:${process.pid}:`) });

    // Someone else's import in progress (another host, started now) and a dead one (hours old).
    const other = (attempt: string, startedAt: number) => JSON.stringify({ kubedos: 1, kind: 'image', sha256: sha, image: 'x', digest: 'x', state: 'importing', startedAt, owner: `elsewhere.example:42:${attempt}` });
    await vc.govc(['vm.create', '-on=false', '-folder', folder, '-pool', '/DC0/host/DC0_C0/Resources', '-ds', 'LocalDS_0', '-net', 'VM Network', '-annotation', other('0000live', Date.now()), `kubedos-import-${sha.slice(0, 16)}-0000live`]);
    await vc.govc(['vm.create', '-on=false', '-folder', folder, '-pool', '/DC0/host/DC0_C0/Resources', '-ds', 'LocalDS_0', '-net', 'VM Network', '-annotation', other('0000dead', Date.now() - 4 * 3600_000), `kubedos-import-${sha.slice(0, 16)}-0000dead`]);

    // The retry (here: the same worker process, a later attempt) cleans up, then imports.
    const again = await driver(vc, { folder: 'kubedos-killed' }).prepare(source, {});
    expect(again.location).toBe(`${folder}/kubedos-image-${sha}`);
    expect(await vmNames(vc, folder)).toEqual([`kubedos-image-${sha}`, `kubedos-import-${sha.slice(0, 16)}-0000live`]);
    expect(existsSync(path.join(vc.dir, 'tmp'))).toBe(true);
    const leftovers = execFileSync('find', [path.join(vc.dir, 'tmp'), '-maxdepth', '2', '-name', `kubedos-import-*`], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map((p) => path.basename(p));
    expect(leftovers).not.toContain(partial);
    await vc.govc(['vm.destroy', `${folder}/kubedos-import-${sha.slice(0, 16)}-0000live`]);
  });

  test('create: a linked clone of the template snapshot, the record in its annotation, identity in guestinfo (never on argv); a retry keeps it', async () => {
    const d = driver(vc);
    const r = request(`${platform}-solo-0001`, 'solo-1', labelsOf('solo'), prepared);
    const callsBefore = govc.calls().length;
    expect(await d.create(r, {})).toEqual(publicPart(r.identity));
    // Cloned under the node's reserved name, then renamed once its record was on it.
    const clone = requests(vc, 'CloneVM_Task').find((x) => x.includes(`<name>${cloneName(r.nodeId)}</name>`))!;
    expect(clone).toContain('<diskMoveType>createNewChildDiskBacking</diskMoveType>');
    expect(clone).toMatch(/<snapshot type="VirtualMachineSnapshot">/);

    const vm = `/DC0/vm/kubedos/${r.nodeId}`;
    const props = await vc.props(vm, 'config.annotation', 'config.extraConfig', 'runtime.powerState', 'config.hardware.numCPU', 'config.hardware.memoryMB');
    expect(JSON.parse(props['config.annotation'] as string)).toEqual({ kubedos: 1, kind: 'node', nodeId: r.nodeId, labels: r.labels });
    expect(props).toMatchObject({ 'runtime.powerState': 'poweredOff', 'config.hardware.numCPU': 2, 'config.hardware.memoryMB': 1024 });
    const extra = extraConfigOf(props['config.extraConfig']);
    const nocloud = renderNocloud({ instanceId: r.nodeId, identity: r.identity, authorizedKeys: [KEY] });
    expect(Buffer.from(extra['guestinfo.metadata']!, 'base64').toString()).toBe(nocloud['meta-data']);
    expect(Buffer.from(extra['guestinfo.userdata']!, 'base64').toString()).toBe(nocloud['user-data']);
    expect(extra).toMatchObject({ 'guestinfo.metadata.encoding': 'base64', 'guestinfo.userdata.encoding': 'base64' });
    expect(JSON.parse(extra['kubedos.identity']!)).toEqual(publicPart(r.identity));

    // No secret on any command line: not the password, not the private key, not the user-data.
    const calls = govc.calls().slice(callsBefore);
    expect(calls.length).toBeGreaterThan(0);
    const argv = calls.map((c) => c.argv.join(' ')).join('\n');
    for (const secret of [VCSIM_PASSWORD, r.identity.hostKeyPrivate.split('\n')[1]!, extra['guestinfo.userdata']!.slice(0, 40)]) expect(argv).not.toContain(secret);
    expect(calls.every((c) => c.env.includes('GOVC_PASSWORD') && c.env.includes('GOVC_TLS_KNOWN_HOSTS') && c.env.includes('GOVC_TLS_CA_CERTS'))).toBe(true);
    // The 0600 files the documents went through are gone.
    expect((await fs.readdir(path.join(tmp, 'state'), { recursive: true })).filter((f) => String(f).includes('secret-'))).toEqual([]);

    // A retried create (a new identity, as a retried activity generates) keeps the VM and its identity.
    expect(await driver(vc).create({ ...r, identity: generateIdentity('solo-1') }, {})).toEqual(publicPart(r.identity));
    expect((await vmNames(vc, '/DC0/vm/kubedos')).filter((n) => n.startsWith(r.nodeId) || n.startsWith('kubedos-clone-'))).toEqual([r.nodeId]);
    // The same node for another image is refused, not reused.
    await expect(d.create({ ...r, labels: { ...r.labels, imageDigest: 'c'.repeat(64) } }, {})).rejects.toBeInstanceOf(NodeImageConflictError);
  });

  test('a create interrupted after the clone, or before the rename, is finished by the retry: one VM, the retry\'s identity', async () => {
    const d = driver(vc);
    const clones = () => requests(vc, 'CloneVM_Task').length;
    const halfMade = async (nodeId: string) =>
      vc.govc(['vm.clone', '-vm', prepared.location, '-link', '-snapshot', 'kubedos-base', '-folder', '/DC0/vm/kubedos', '-pool', '/DC0/host/DC0_C0/Resources', '-on=false', cloneName(nodeId)]);
    // What a worker killed right after the clone leaves: the clone under the node's reserved name, nothing on it.
    const r = request(`${platform}-solo-0002`, 'solo-2', labelsOf('solo'), prepared);
    await halfMade(r.nodeId);
    const before = clones();
    expect(await d.create(r, {})).toEqual(publicPart(r.identity));
    expect(clones()).toBe(before);
    const props = await vc.props(`/DC0/vm/kubedos/${r.nodeId}`, 'config.annotation', 'config.extraConfig', 'config.hardware.memoryMB');
    expect(JSON.parse(props['config.annotation'] as string)).toEqual({ kubedos: 1, kind: 'node', nodeId: r.nodeId, labels: r.labels });
    expect(props['config.hardware.memoryMB']).toBe(1024);
    expect(JSON.parse(extraConfigOf(props['config.extraConfig'])['kubedos.identity']!)).toEqual(publicPart(r.identity));

    // Killed after the reconfigure, before the rename: the record and identity are kept, the name given.
    const r4 = request(`${platform}-solo-0004`, 'solo-4', labelsOf('solo'), prepared);
    await halfMade(r4.nodeId);
    const first = generateIdentity('solo-4');
    await vc.govc(['vm.change', '-vm', `/DC0/vm/kubedos/${cloneName(r4.nodeId)}`, '-annotation', JSON.stringify({ kubedos: 1, kind: 'node', nodeId: r4.nodeId, labels: r4.labels }), '-e', `kubedos.identity=${JSON.stringify(publicPart(first))}`]);
    expect(await d.create(r4, {})).toEqual(publicPart(first));
    expect((await vmNames(vc, '/DC0/vm/kubedos')).filter((n) => n.startsWith('kubedos-clone-'))).toEqual([]);

    // A half-made clone is destroyed with its node, even when it never got a name.
    await halfMade(`${platform}-solo-0005`);
    await d.destroy(`${platform}-solo-0005`, {});
    await d.destroy(r4.nodeId, {});
    expect((await vmNames(vc, '/DC0/vm/kubedos')).filter((n) => n.startsWith('kubedos-clone-') || n === r4.nodeId)).toEqual([]);
  });

  test("the image's own reader and readiness hook, run as the guest through a vmware-rpctool stand-in on the VM's extraConfig in vcsim", async () => {
    const d = driver(vc);
    const nodeId = `${platform}-solo-0001`;
    await d.start(nodeId, {});
    expect(await d.readiness(nodeId, {})).toBe(false);
    await expect(d.address(nodeId, {})).rejects.toBeInstanceOf(NodeAddressUnknownError);
    const identity = (await d.list({ fleet: 'solo' }, {})).find((n) => n.nodeId === nodeId)!.identity!;

    // The guest: a scratch root, the image's readers, DMI saying VMware, and the stand-in rpctool.
    const dir = await fs.mkdtemp(path.join(tmp, 'guest-'));
    const { root, lib } = await scratchRoot(dir);
    await fs.writeFile(path.join(lib, 'metadata.d', '30-guestinfo'), GUESTINFO_READER, { mode: 0o755 });
    mkdirSync(path.join(lib, 'ready.d'));
    await fs.writeFile(path.join(lib, 'ready.d', '30-guestinfo'), GUESTINFO_READY, { mode: 0o755 });
    mkdirSync(path.join(dir, 'dmi'));
    await fs.writeFile(path.join(dir, 'dmi', 'sys_vendor'), 'VMware, Inc.\n');
    const bin = path.join(dir, 'bin');
    mkdirSync(bin);
    symlinkSync(execFileSync('sh', ['-c', 'command -v mawk'], { encoding: 'utf8' }).trim(), path.join(bin, 'awk'));
    const guest = (script: string, args: string[] = []) =>
      new Promise<{ status: number | null; out: string }>((resolve) => {
        const child = spawn('dash', [script, ...args], {
          env: {
            PATH: `${bin}:${path.dirname(process.execPath)}:/usr/sbin:/usr/bin:/sbin:/bin`,
            KUBEDOS_ROOT: root, KUBEDOS_DMI_DIR: path.join(dir, 'dmi'), KUBEDOS_RPCTOOL: RPCTOOL, TMPDIR: path.join(root, 'run'),
            KUBEDOS_GUESTINFO_VCSIM: JSON.stringify({ govc: GOVC, vm: `/DC0/vm/kubedos/${nodeId}`, env: vc.govcEnv }),
          },
        });
        let out = '';
        child.stdout.on('data', (b: Buffer) => (out += b));
        child.stderr.on('data', (b: Buffer) => (out += b));
        child.on('close', (status) => resolve({ status, out }));
      });
    const first = await guest(path.join(lib, 'metadata.d', '30-guestinfo'));
    expect(first).toMatchObject({ status: 0 });
    expect(first.out).toContain('kubedos: guestinfo: read guestinfo.metadata and guestinfo.userdata');
    expect(readFileSync(path.join(root, 'etc/hostname'), 'utf8')).toBe('solo-1\n');
    expect(readFileSync(path.join(root, 'etc/ssh/ssh_host_ed25519_key.pub'), 'utf8')).toBe(`${identity.hostKeyPublic}\n`);
    expect(readFileSync(path.join(root, 'etc/machine-id'), 'utf8')).toBe(`${identity.machineId}\n`);
    expect(readFileSync(path.join(root, 'root/.ssh/authorized_keys'), 'utf8')).toBe(`${KEY}\n`);

    expect(await guest(path.join(lib, 'ready.d', '30-guestinfo'), ['solo-1'])).toMatchObject({ status: 0 });
    expect(await d.readiness(nodeId, {})).toBe(true);
    // Seen ready: the private host key is no longer in the VM's configuration; the rest stays.
    const extra = extraConfigOf((await vc.props(`/DC0/vm/kubedos/${nodeId}`, 'config.extraConfig'))['config.extraConfig']);
    expect(extra['guestinfo.userdata']).toBeUndefined();
    expect(extra['guestinfo.userdata.encoding']).toBeUndefined();
    expect(extra['guestinfo.metadata']).toBeDefined();
    // VMware Tools reports no address yet: no address, and the driver says why.
    await expect(d.address(nodeId, {})).rejects.toThrow(/VMware Tools reports no IPv4 address/);
  });

  test('a VM KubeDos did not make is never listed, used or touched; an orphan of ours is found by list', async () => {
    const d = driver(vc);
    const folder = '/DC0/vm/kubedos';
    const squatter = `${platform}-solo-0003`;
    await vc.govc(['vm.create', '-on=false', '-folder', folder, '-pool', '/DC0/host/DC0_C0/Resources', '-net', 'VM Network', '-annotation', 'database, do not delete', squatter]);
    await vc.govc(['vm.create', '-on=false', '-folder', folder, '-pool', '/DC0/host/DC0_C0/Resources', '-net', 'VM Network', '-annotation', JSON.stringify({ kubedos: 1, kind: 'nodes?', nodeId: 'x' }), 'legacy-app']);
    // The orphan: a node of a fleet no workflow knows (its workflow is long gone).
    const orphan = request(`${platform}-gone-0001`, 'gone-1', labelsOf('gone', { generation: 7 }), prepared);
    await d.create(orphan, {});

    const owned = await d.list({ platform }, {});
    expect(owned.map((n) => n.nodeId)).toEqual([`${platform}-gone-0001`, `${platform}-solo-0001`, `${platform}-solo-0002`]);
    expect(owned[0]).toEqual({ nodeId: orphan.nodeId, labels: orphan.labels, identity: publicPart(orphan.identity), running: false });
    expect((await d.list({ platform, fleet: 'gone' }, {})).map((n) => n.nodeId)).toEqual([orphan.nodeId]);

    await expect(d.create(request(squatter, 'solo-3', labelsOf('solo'), prepared), {})).rejects.toBeInstanceOf(VsphereNotOwnedError);
    await expect(d.start(squatter, {})).rejects.toBeInstanceOf(VsphereNotOwnedError);
    await d.destroy(squatter, {});
    await d.destroy('legacy-app', {});
    await expect(d.start(`${platform}-none-0001`, {})).rejects.toBeInstanceOf(TargetNodeNotFoundError);
    await d.destroy(`${platform}-none-0001`, {}); // absent: not an error
    expect(await vmNames(vc, folder)).toEqual(expect.arrayContaining([squatter, 'legacy-app']));
    // The simulator's own VMs, outside the folder, are never listed.
    expect((await d.list({}, {})).some((n) => n.nodeId.startsWith('DC0_'))).toBe(false);

    for (const n of owned) await d.destroy(n.nodeId, {});
    expect(await d.list({ platform }, {})).toEqual([]);
    expect(await vmNames(vc, folder)).toEqual([`kubedos-image-${source.artifact!.sha256}`, 'legacy-app', squatter].sort());
    await vc.govc(['vm.destroy', `${folder}/${squatter}`, `${folder}/legacy-app`]);
  });

  test('clone: full copies the template instead of linking to its snapshot', async () => {
    const d = driver(vc, { clone: 'full' });
    const r = request(`${platform}-full-0001`, 'full-1', labelsOf('full'), prepared);
    await d.create(r, {});
    const clone = requests(vc, 'CloneVM_Task').find((x) => x.includes(`<name>${cloneName(r.nodeId)}</name>`))!;
    expect(clone).not.toContain('createNewChildDiskBacking');
    expect(clone).not.toMatch(/<snapshot /);
    await d.destroy(r.nodeId, {});
    expect(await vmNames(vc, '/DC0/vm/kubedos')).not.toContain(r.nodeId);
  });

  describe('through the fleet workflow (dev server, a vsphere-pool worker on its own queue)', () => {
    let env: TestEnv;
    const workers: Worker[] = [];
    const running: Promise<void>[] = [];
    let handle: Awaited<ReturnType<TestEnv['client']['workflow']['start']>>;
    let fleetDriver: VsphereDriver;
    let guests: GuestPlayer;
    let listener: net.Server;
    let port: number;
    let input: FleetInput;
    const fleetPlatform = `f${id}`;

    beforeAll(async () => {
      env = await connectTestEnv();
      // The guests' service, on the address VMware Tools reports for them (the test plays the guests).
      listener = net.createServer((s) => s.end());
      await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
      port = (listener.address() as net.AddressInfo).port;
    });

    afterAll(async () => {
      if (handle) await handle.signal(teardownSignal).catch(() => undefined);
      if (handle) await handle.result().catch(() => undefined);
      await guests?.stop();
      for (const w of workers) w.shutdown();
      await Promise.allSettled(running);
      await env?.close();
      await new Promise((r) => listener?.close(r));
    });

    const nodesInVcsim = async () => (await vmNames(vc, '/DC0/vm/kubedos-fleet')).filter((n) => n.startsWith(fleetPlatform));

    test('a fleet of 3 is deployed and healthy on its guests\' addresses, scaled to 5 and back to 3 (the test plays the guests)', async () => {
      const target: TargetRef = { name: 'vc', spec: spec(vc, { folder: 'kubedos-fleet' }) as never };
      fleetDriver = driver(vc, { folder: 'kubedos-fleet' });
      const deployQueue = `t-${id}-vsphere`;
      const controlQueue = `t-${id}-control`;
      const deploy = createDeployActivities({
        driverFor: () => fleetDriver,
        // The verified fetch is the store's (tested with it, and by the CLI test); here the OVA is local.
        fetchArtifact: async () => source.artifact!,
      });
      workers.push(await testPoolWorker(env, 'vsphere', deployQueue, deploy as never), await testPoolWorker(env, 'control', controlQueue));
      running.push(...workers.map((w) => w.run()));
      // Generation 2 nodes never come up: their guests are not played.
      guests = playGuests(vc, '/DC0/vm/kubedos-fleet', { accept: (vm) => JSON.parse(vm.annotation).labels.generation === 1 });
      players.push(guests);

      input = {
        platform: fleetPlatform,
        fleet: 'web',
        target,
        deployQueue,
        artifactFormat: 'ova',
        hostnamePrefix: 'web',
        authorizedKeys: [KEY],
        // Healthy = the guest's service answers on the address VMware Tools reports.
        healthCheck: { type: 'tcp', port, timeout: 60_000, interval: 300, retries: 0 },
        rollout: { maxSurge: 1, maxUnavailable: 0, failureThreshold: 1, batchSize: 50 },
        image: { name: 'kubedos-test', digest: 'e'.repeat(64) },
        replicas: 3,
      };
      const started = Date.now();
      handle = await env.client.workflow.start('fleet', { taskQueue: controlQueue, workflowId: fleetWorkflowId(fleetPlatform, 'web'), args: [input] });
      const g1 = await waitForStatus(handle, (s) => s.phase === 'steady' && readyCount(s) === 3, 180_000);
      console.log(`vsphere (vcsim), fleet of 3: deploy → healthy in ${Date.now() - started} ms`);
      expect(await nodesInVcsim()).toEqual(g1.nodes.map((n) => n.nodeId).sort());
      const owned = await fleetDriver.list({ platform: fleetPlatform }, {});
      expect(owned.map((n) => [n.nodeId, n.running, n.labels.fleet, n.labels.generation, n.identity])).toEqual(g1.nodes.map((n) => [n.nodeId, true, 'web', 1, n.identity]).sort());
      expect(new Set(owned.map((n) => n.identity!.hostKeyFingerprint)).size).toBe(3);
      // Each guest was given the identity the workflow recorded (its private key among it)…
      for (const n of g1.nodes) {
        const vm = [...guests.played.values()].find((v) => v.name === n.nodeId)!;
        expect(vm.hostname).toBe(n.hostname);
        expect(vm.userData).toContain(`ed25519_public: '${n.identity!.hostKeyPublic}'`);
        expect(vm.userData).toContain('-----BEGIN OPENSSH PRIVATE KEY-----');
        // …which is no longer in its configuration now that it is ready.
        const extra = extraConfigOf((await vc.props(vm.ref, 'config.extraConfig'))['config.extraConfig']);
        expect(Object.keys(extra).filter((k) => k.startsWith('guestinfo.userdata'))).toEqual([]);
      }

      expect(await handle.executeUpdate(scaleUpdate, { args: [5] })).toBe(5);
      const five = await waitForStatus(handle, (s) => s.phase === 'steady' && readyCount(s) === 5, 180_000);
      expect(await nodesInVcsim()).toEqual(five.nodes.map((n) => n.nodeId).sort());
      await handle.executeUpdate(scaleUpdate, { args: [3] });
      const three = await waitForStatus(handle, (s) => s.phase === 'steady' && s.nodes.length === 3 && readyCount(s) === 3, 180_000);
      expect(await nodesInVcsim()).toEqual(three.nodes.map((n) => n.nodeId).sort());
      expect(three.nodes.map((n) => n.nodeId).sort()).toEqual(g1.nodes.map((n) => n.nodeId).sort());
    });

    test('a rollout to a new image whose nodes fail their check is rolled back; generation 1 keeps serving', async () => {
      const before = await waitForStatus(handle, (s) => s.phase === 'steady');
      // The new image's nodes are never played: their check (now with a short timeout) fails.
      const { image: _image, replicas: _replicas, ...template } = input;
      await handle.executeUpdate(deployUpdate, { args: [{ image: { name: 'kubedos-test', digest: 'b'.repeat(64) }, template: { ...template, healthCheck: { type: 'tcp', port, timeout: 5_000, interval: 300, retries: 0 } } }] });
      const back = await waitForStatus(handle, (s) => s.rollouts.length === 2 && s.phase === 'steady', 180_000);
      expect(back.rollouts[1]).toMatchObject({ from: 1, to: 2, outcome: 'rolled-back' });
      expect(back.generation).toBe(1);
      expect(back.nodes.filter((n) => n.state === 'ready').map((n) => n.nodeId).sort()).toEqual(before.nodes.filter((n) => n.state === 'ready').map((n) => n.nodeId).sort());
      expect(guests.refused.size).toBeGreaterThan(0);
      // The failed node's VM was destroyed; what runs is generation 1, from the first image.
      await waitUntil('the failed node to be gone', async () => (await nodesInVcsim()).length === 3);
      const owned = await fleetDriver.list({ platform: fleetPlatform }, {});
      expect(owned.map((n) => n.nodeId).sort()).toEqual(back.nodes.filter((n) => n.state === 'ready').map((n) => n.nodeId).sort());
      expect(owned.every((n) => n.labels.imageDigest === 'e'.repeat(64) && n.labels.generation === 1 && n.running)).toBe(true);

      await handle.signal(teardownSignal);
      // The fleet's record of the failed node goes with it (its VM already went with the failure).
      expect(await handle.result()).toEqual({ fleet: 'web', destroyed: back.nodes.length });
      handle = undefined as never;
      expect(await nodesInVcsim()).toEqual([]);
      expect(await fleetDriver.list({ platform: fleetPlatform }, {})).toEqual([]);
    });
  });
});

describe('standalone ESXi (vcsim -esx)', () => {
  let esx: Vcsim;
  beforeAll(async () => {
    esx = await startVcsim({ esx: true, trace: true });
  });
  afterAll(async () => {
    await esx?.stop();
  });

  test('no vCenter: the OVA becomes a plain VM, each node a copy of its disk; create, ready (the test plays the guest), destroy', async () => {
    const d = driver(esx, { esx: true, folder: 'kubedos' });
    const prepared = await d.prepare(source, {});
    const sha = source.artifact!.sha256;
    expect(prepared.location).toBe(`/ha-datacenter/vm/kubedos-image-${sha}`);
    expect((await esx.props(prepared.location, 'config.template'))['config.template']).toBe(false);
    expect(await d.prepare(source, {})).toEqual(prepared);
    expect(requests(esx, 'ImportVApp')).toHaveLength(1);

    const nodes = [1, 2].map((n) => request(`${platform}-esx-000${n}`, `esx-${n}`, labelsOf('esx'), prepared));
    const ids = await Promise.all(nodes.map((r) => d.create(r, {})));
    ids.forEach((identity, i) => expect(identity).toEqual(publicPart(nodes[i]!.identity)));
    // ESXi clones nothing: no CloneVM_Task; a disk copy and a VM around it per node.
    expect(requests(esx, 'CloneVM_Task')).toEqual([]);
    expect(requests(esx, 'CopyVirtualDisk_Task')).toHaveLength(2);
    for (const r of nodes) {
      const devices = ((await esx.props(`/ha-datacenter/vm/${r.nodeId}`, 'config.hardware.device'))['config.hardware.device'] as { _value: Array<{ backing?: { fileName?: string } }> })._value;
      expect(devices.map((d) => d.backing?.fileName).filter(Boolean)).toEqual([`[LocalDS_0] ${r.nodeId}/${r.nodeId}.vmdk`]);
    }
    const guests = playGuests(esx, '/ha-datacenter/vm');
    players.push(guests);
    await Promise.all(nodes.map((r) => d.start(r.nodeId, {})));
    await waitUntil('both nodes ready', async () => (await Promise.all(nodes.map((r) => d.readiness(r.nodeId, {})))).every(Boolean));
    expect(await d.address(nodes[0]!.nodeId, {})).toEqual({ host: '127.0.0.1', ports: { 22: 22 } });
    expect((await d.list({ platform }, {})).map((n) => [n.nodeId, n.running])).toEqual(nodes.map((r) => [r.nodeId, true]));
    // The simulator's own VMs (on the same root folder) are never listed or touched.
    expect((await d.list({}, {})).map((n) => n.nodeId)).toEqual(nodes.map((r) => r.nodeId));
    await guests.stop();

    await Promise.all(nodes.map((r) => d.destroy(r.nodeId, {})));
    expect(await d.list({}, {})).toEqual([]);
    expect(await vmNames(esx, '/ha-datacenter/vm')).toEqual(['ha-host_VM0', 'ha-host_VM1', `kubedos-image-${sha}`]);
    const dirs = execFileSync('find', [path.join(esx.dir, 'tmp'), '-mindepth', '2', '-maxdepth', '2', '-type', 'd'], { encoding: 'utf8' }).split('\n').map((p) => path.basename(p));
    for (const r of nodes) expect(dirs).not.toContain(r.nodeId);
  });
});
