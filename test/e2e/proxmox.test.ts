/**
 * The Proxmox driver against a real OpenSSH server on loopback whose `qm` and `pvesm` are
 * STAND-INS (test/support/proxmox-standin): no Proxmox VE and no VM runs here. What is real: the
 * SSH layer (pinned host key, argv quoting through the remote login shell, SFTP upload with
 * verification), the driver, the fleet workflow on the dev server with a deploy worker on its own
 * queue. What is simulated: qm/pvesm, which record every argv, refuse what real qm would refuse
 * (unknown options and keys, taken VM ids, bad storages, locked or running VMs, …), keep VM
 * state in a directory, and "boot" a VM as a process that serves its serial socket and prints
 * the identity it read from the cloud-init snippets, then `kubedos: ready <hostname>`.
 */
import { execFile } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, promises as fs, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { Worker } from '@temporalio/worker';
import { createDeployActivities, type TargetRef } from '../../activities/deploy';
import { GuestAgentUnavailableError, HostKeyMismatchError, NodeNotRunningError } from '../../src/errors';
import type { TargetOf } from '../../src/platform/types';
import type { CreateNodeRequest, NodeLabels, PreparedImage } from '../../src/targets/driver';
import { generateIdentity, publicPart } from '../../src/targets/identity';
import { createDriver } from '../../src/targets';
import { qmCreateArgv } from '../../src/targets/proxmox/argv';
import { ProxmoxDriver } from '../../src/targets/proxmox/driver';
import { parseQmConfig, parseQmList } from '../../src/targets/proxmox/parse';
import { decodeDescription, encodeDescription, type VmRecord } from '../../src/targets/proxmox/record';
import { fleetWorkflowId, teardownSignal, type FleetInput } from '../../workflows/fleet-api';
import { readyCount, waitForStatus } from '../support/fleet';
import { injectionCorpus } from '../support/injection-corpus';
import { killProcessesMentioning, pidsMentioning, startProxmoxStandin, type Invocation, type ProxmoxStandin } from '../support/proxmox-standin';
import { connectTestEnv, testPoolWorker, type TestEnv } from '../support/temporal';

jest.setTimeout(5 * 60_000);

const run = promisify(execFile);
const RANGE: [number, number] = [9000, 9019];
const OUTSIDE = 9100;

let tmp: string;
let pve: ProxmoxStandin;
let image: { path: string; sha256: string; size: number };
let prepared: PreparedImage;
const drivers: ProxmoxDriver[] = [];
const platform = `p${randomUUID().slice(0, 6)}`;

/** A driver as a kvm worker would make one, with the host directories inside the test's tmp. */
function driver(spec: Partial<TargetOf<'proxmox'>> = {}): ProxmoxDriver {
  const d = new ProxmoxDriver('pve', pve.spec({ vmidRange: RANGE, ...spec }), { stateDir: path.join(tmp, 'local-state') }, {
    imageDir: path.join(tmp, 'host', 'images'),
    remoteStateDir: path.join(tmp, 'host', 'kubedos'),
    serialSocketDir: pve.runDir,
  });
  drivers.push(d);
  return d;
}

function labelsOf(fleet: string, overrides: Partial<NodeLabels> = {}): NodeLabels {
  return { platform, fleet, generation: 1, image: 'worker', imageDigest: 'd'.repeat(64), ...overrides };
}

function request(nodeId: string, hostname: string, labels: NodeLabels): CreateNodeRequest {
  return { nodeId, labels, image: prepared, identity: generateIdentity(hostname), authorizedKeys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHfake kubedos-test'] };
}

/** PVE::Tools::encode_text, as `qm config` applies it to descriptions (independent of the driver). */
function encodeText(text: string): string {
  return [...Buffer.from(text, 'utf8')].map((b) => (b >= 0x20 && b <= 0x7e && b !== 0x3a ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`)).join('');
}

const viaSsh = (): Invocation[] => pve.invocations().filter((i) => i.via === 'ssh');
/** Every VM id that some `qm` call through SSH stopped or destroyed. */
const touched = (): number[] => viaSsh().filter((i) => i.tool === 'qm' && ['stop', 'destroy'].includes(i.argv[0]!)).map((i) => Number(i.argv[1]));

async function waitUntil(what: string, ok: () => Promise<boolean> | boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-proxmox-'));
  pve = await startProxmoxStandin({ otherNodes: { 9002: 'pve2' }, bootMs: 1200 });
  const file = path.join(tmp, 'worker.qcow2');
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', file, '64M']);
  const bytes = await fs.readFile(file);
  image = { path: file, sha256: createHash('sha256').update(bytes).digest('hex'), size: bytes.length };
});

afterAll(async () => {
  for (const d of drivers) await d.close().catch(() => undefined);
  if (tmp) killProcessesMentioning(tmp); // console readers, whatever happened
  await pve?.stop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

describe('proxmox driver against a real sshd with stand-in qm/pvesm', () => {
  test('argv and output formats: one qm create with the disk import and the cloud-init drive; descriptions survive qm config', () => {
    const argv = qmCreateArgv({
      vmid: 9005, name: 'n-1', memoryMiB: 1024, cores: 2, storage: 'local-lvm', bridge: 'vmbr0', image: '/var/lib/vz/template/kubedos/x.qcow2',
      tags: 'kubedos;fleet-a;gen-1', description: '{}', uuid: '01234567-89ab-cdef-0123-456789abcdef', cloudInit: { user: 'local:snippets/u.yaml', meta: 'local:snippets/m.yaml' },
    });
    expect(argv.slice(0, 3)).toEqual(['qm', 'create', '9005']);
    const opt = (name: string) => argv[argv.indexOf(name) + 1];
    expect(opt('--scsi0')).toBe('local-lvm:0,import-from=/var/lib/vz/template/kubedos/x.qcow2');
    expect(opt('--ide2')).toBe('local-lvm:cloudinit');
    expect(opt('--cicustom')).toBe('user=local:snippets/u.yaml,meta=local:snippets/m.yaml');
    expect(opt('--serial0')).toBe('socket');
    expect(opt('--smbios1')).toBe('uuid=01234567-89ab-cdef-0123-456789abcdef');

    expect(parseQmList('      VMID NAME                 STATUS     MEM(MB)    BOOTDISK(GB) PID\n       100 web                  running    2048              32.00 4242\n       101                      stopped    512                0.00 0\n')).toEqual([
      { vmid: 100, name: 'web', status: 'running' },
      { vmid: 101, name: '', status: 'stopped' },
    ]);
    const record: VmRecord = {
      kubedos: 1,
      nodeId: 'n-1',
      labels: labelsOf('a: b %41 é\n"x"', { image: '100%' }),
      identity: publicPart(generateIdentity('n-1')),
    };
    const printed = parseQmConfig(`description: ${encodeText(encodeDescription(record))}\ntags: kubedos\n`);
    expect(decodeDescription(printed.description)).toEqual(record);
    expect(decodeDescription(encodeText('a note: %41 typed by hand'))).toBeUndefined();
  });

  test('the stand-ins refuse what qm and pvesm would refuse, so their accepting the driver means something', async () => {
    const refusals: Array<[string[], RegExp]> = [
      [['create', '9018', '--bogus', '1'], /Unknown option: bogus/],
      [['create', '99', '--name', 'x'], /valid VM ID/],
      [['create', '9018', '--name', 'x', '--name', 'y'], /given twice/],
      [['create', '9018', '--name', 'not_a;dns$(name)'], /name: .*dns-name/],
      [['create', '9018', '--scsi0', 'local-lvm:8,import-from=/etc/hostname'], /'import-from' requires special syntax/],
      [['create', '9018', '--scsi0', 'local-lvm:0,import-from=/nonexistent.qcow2'], /does not exist/],
      [['create', '9018', '--scsi0', 'local:0,import-from=/etc/hostname'], /storage 'local' does not support vm images/],
      [['create', '9018', '--net0', 'virtio,bridge=vmbr0,colour=blue'], /net0\.colour: property is not defined/],
      [['create', '9018', '--cicustom', 'user=local-lvm:snippets/x.yaml'], /does not support content-type 'snippets'/],
      [['create', '9018', '--boot', 'order=scsi0'], /invalid bootorder/],
      [['create', '9018', '--tags', 'kubedos;$(id)'], /invalid tag/],
      [['create', '9018', '--freeze', '1'], /real option but not modelled/],
      [['destroy', '9018'], /does not exist/],
      [['start', '9018', 'extra'], /too many arguments/],
      [['frobnicate'], /unknown command 'qm frobnicate'/],
    ];
    for (const [argv, message] of refusals) {
      const r = await pve.local('qm', argv);
      expect([argv.join(' '), r.code, r.stderr]).toEqual([argv.join(' '), 255, expect.stringMatching(message)]);
    }
    expect(pve.vmids()).toEqual([]);
  });

  test('a target pointing at the wrong node or a storage without disk images is refused before anything is made', async () => {
    const source = { name: 'worker', digest: 'd'.repeat(64), artifact: { format: 'qcow2', ...image } };
    await expect(driver({ node: 'pve-elsewhere' }).prepare(source, {})).rejects.toThrow(/is Proxmox node ".*", the spec names "pve-elsewhere"/);
    await expect(driver({ storage: 'local' }).prepare(source, {})).rejects.toThrow(/storage "local" .* cannot hold disk images/);
    expect(existsSync(path.join(tmp, 'host', 'images'))).toBe(false);
  });

  test('the registry builds the proxmox driver from a spec', async () => {
    const d = await createDriver('pve', pve.spec());
    expect(d).toBeInstanceOf(ProxmoxDriver);
    await d.close?.();
  });

  test('prepare uploads the qcow2 once per digest, verified and read-only', async () => {
    const d = driver();
    const source = { name: 'worker', digest: 'd'.repeat(64), artifact: { format: 'qcow2', ...image } };
    prepared = await d.prepare(source, {});
    expect(prepared.location).toBe(path.join(tmp, 'host', 'images', `${image.sha256}.qcow2`));
    expect(createHash('sha256').update(readFileSync(prepared.location)).digest('hex')).toBe(image.sha256);
    expect(statSync(prepared.location).mode & 0o777).toBe(0o444);
    const before = statSync(prepared.location).mtimeMs;
    expect(await d.prepare(source, {})).toEqual(prepared);
    expect(statSync(prepared.location).mtimeMs).toBe(before);
    // The host was checked first: it is the named node, with image and snippet storages.
    expect(viaSsh().map((i) => [i.tool, ...i.argv].join(' '))).toEqual(expect.arrayContaining(['pvesm status --content images', 'pvesm status --content snippets', 'pvesm path local:snippets/kubedos-probe.yaml']));
  });

  test('parallel creates from two workers get distinct free ids in the range, skipping foreign VMs and ids used on other nodes', async () => {
    // A VM somebody made by hand, one that wears our tag without being ours (named like a node we
    // will make), and one of ours from another KubeDos target whose range ends before 9100.
    expect((await pve.local('qm', ['create', '9000', '--name', 'legacy-db', '--memory', '512', '--net0', 'virtio,bridge=vmbr0'])).code).toBe(0);
    expect((await pve.local('qm', ['create', '9001', '--name', `${platform}-web-0001`, '--tags', 'kubedos', '--description', 'made by hand, tagged by mistake'])).code).toBe(0);
    const elsewhere: VmRecord = { kubedos: 1, nodeId: `${platform}-web-0009`, labels: labelsOf('web'), identity: publicPart(generateIdentity('web-9')) };
    expect((await pve.local('qm', ['create', String(OUTSIDE), '--name', elsewhere.nodeId, '--tags', 'kubedos', '--description', encodeDescription(elsewhere)])).code).toBe(0);
    expect(pve.vmids()).toEqual([9000, 9001, OUTSIDE]);

    // Two workers (two driver instances, no shared memory) create five nodes at once.
    const [w1, w2] = [driver(), driver()];
    const requests = [1, 2, 3, 4, 5].map((n) => request(`${platform}-web-000${n}`, `web-${n}`, labelsOf('web')));
    const identities = await Promise.all(requests.map((r, i) => (i < 3 ? w1 : w2).create(r, {})));
    identities.forEach((identity, i) => expect(identity).toEqual(publicPart(requests[i]!.identity)));

    const vmids = await Promise.all(requests.map((r) => w1.vmidOf(r.nodeId)));
    expect(new Set(vmids).size).toBe(5);
    for (const vmid of vmids) {
      expect(vmid).toBeGreaterThanOrEqual(RANGE[0]);
      expect(vmid).toBeLessThanOrEqual(RANGE[1]);
      expect([9000, 9001, 9002]).not.toContain(vmid);
    }
    // The workers did collide, and moved on: qm refused ids taken by the other worker or another node.
    const refused = viaSsh().filter((i) => i.tool === 'qm' && i.argv[0] === 'create' && i.exit !== 0);
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.every((i) => /already exists/.test(i.stderr))).toBe(true);
    expect(refused.filter((i) => /on node 'pve2'/.test(i.stderr)).map((i) => i.argv[1])).toContain('9002'); // used elsewhere in the cluster
    expect(refused.some((i) => i.stderr.includes(`on node '${pve.node}'`) || /config file already exists/.test(i.stderr))).toBe(true); // the other worker's
    // No other refusal: every argv the driver sent was one qm accepts.
    expect(viaSsh().filter((i) => i.exit !== 0 && !(i.argv[0] === 'create' && /already exists/.test(i.stderr)))).toEqual([]);

    for (const [i, r] of requests.entries()) {
      const config = pve.config(vmids[i]!)!;
      expect(config.name).toBe(r.nodeId);
      expect(config.lock).toBeUndefined();
      expect(config.tags.split(';')).toEqual(['kubedos', `platform-${platform}`, 'fleet-web', 'gen-1']);
      expect(decodeDescription(encodeText(config.description!))).toEqual({ kubedos: 1, nodeId: r.nodeId, labels: r.labels, identity: publicPart(r.identity) });
      expect(config.smbios1).toBe(`uuid=${r.identity.machineId.replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, '$1-$2-$3-$4-$5')}`);
      // The disk is an import of the prepared image, byte for byte.
      const disk = JSON.parse(readFileSync(path.join(pve.stateDir, 'lvm', 'local-lvm', config.scsi0!.split(',')[0]!.split(':')[1]!), 'utf8'));
      expect(disk).toMatchObject({ importedFrom: prepared.location, format: 'qcow2', sha256: image.sha256 });
      // The identity travels as NoCloud snippets, 0600 (they hold the private host key).
      const snippets = /^user=local:snippets\/([^,]+),meta=local:snippets\/([^,]+)$/.exec(config.cicustom!)!;
      const user = path.join(pve.localDir, 'snippets', snippets[1]!);
      expect(statSync(user).mode & 0o777).toBe(0o600);
      expect(statSync(path.join(pve.localDir, 'snippets', snippets[2]!)).mode & 0o777).toBe(0o600);
      const userData = readFileSync(user, 'utf8');
      expect(userData).toMatch(/^#cloud-config\n/);
      expect(userData).toContain(`hostname: '${r.identity.hostname}'`);
      expect(userData).toContain(r.identity.hostKeyPrivate.split('\n')[1]);
      expect(userData).toContain(r.identity.machineId);
    }
    // The VM wearing our tag was not taken for web-0001: that node got a VM of its own.
    expect(vmids[0]).not.toBe(9001);

    // A retried create (new identity generated by the retried activity) keeps the VM and its identity.
    const again = await w2.create({ ...requests[0]!, identity: generateIdentity('web-1') }, {});
    expect(again).toEqual(publicPart(requests[0]!.identity));
    expect(pve.vmids()).toHaveLength(3 + 5);
  });

  test('start boots the (stand-in) VM; readiness comes from its serial console, the address from its guest agent', async () => {
    const d = driver();
    const nodes = [`${platform}-web-0001`, `${platform}-web-0002`];
    await Promise.all(nodes.map((n) => d.start(n, {})));
    await waitUntil('both nodes ready', async () => (await Promise.all(nodes.map((n) => d.readiness(n, {})))).every(Boolean));

    const owned = await d.list({ platform, fleet: 'web' }, {});
    expect(owned.map((n) => [n.nodeId, n.running])).toEqual([1, 2, 3, 4, 5].map((n) => [`${platform}-web-000${n}`, n <= 2]));
    for (const nodeId of nodes) {
      const identity = owned.find((n) => n.nodeId === nodeId)!.identity!;
      // What the guest printed is the identity the Foundry recorded, read from the cloud-init drive.
      const consoleLog = readFileSync(path.join(tmp, 'host', 'kubedos', 'console', `${nodeId}.log`), 'utf8');
      expect(consoleLog).toContain(`kubedos: hostkey 256 ${identity.hostKeyFingerprint} root@${identity.hostname} (ED25519)`);
      expect(consoleLog).toContain(`kubedos: nocloud: machine-id ${identity.machineId}`);
      const vmid = (await d.vmidOf(nodeId))!;
      expect(await d.address(nodeId, {})).toEqual({ host: `10.99.${(vmid >> 8) & 255}.${vmid & 255}`, ports: { 22: 22 } });
      // The console reader let go of the serial socket once the node was ready (qm terminal works again).
      await waitUntil('console reader to exit', () => pidsMentioning(path.join('console', `${nodeId}.log`)).length === 0, 5_000);
    }
    // A retried start of a running VM starts nothing.
    const starts = () => viaSsh().filter((i) => i.argv[0] === 'start').length;
    const before = starts();
    await d.start(nodes[0]!, {});
    expect(starts()).toBe(before);
    // A node that is not running has no address, and will never report ready: the driver says why.
    await expect(d.address(`${platform}-web-0003`, {})).rejects.toBeInstanceOf(GuestAgentUnavailableError);
    await expect(d.readiness(`${platform}-web-0003`, {})).rejects.toBeInstanceOf(NodeNotRunningError);
  });

  test('labels with shell metacharacters arrive verbatim, and nothing is executed', async () => {
    const canary = path.join(tmp, 'pwned');
    // The whole injection corpus (quotes, $(), backticks, newlines, control characters, %, unicode) in labels.
    const labels = labelsOf(`we;ird $(touch ${canary}) \`touch ${canary}\` 'q' "dq" %41 é`, { image: injectionCorpus(canary).join('|') });
    const d = driver();
    const r = request(`${platform}-odd-0001`, 'odd-1', labels);
    await d.create(r, {});

    const create = viaSsh().find((i) => i.argv[0] === 'create' && i.argv.includes(r.nodeId) && i.exit === 0)!;
    const description = create.argv[create.argv.indexOf('--description') + 1]!;
    expect(description).toBe(encodeDescription({ kubedos: 1, nodeId: r.nodeId, labels, identity: publicPart(r.identity) }));
    expect(JSON.parse(description).labels).toEqual(labels);
    expect(description).toContain(`$(touch ${canary})`);
    const tags = create.argv[create.argv.indexOf('--tags') + 1]!;
    expect(tags.split(';').every((t) => /^[a-z0-9_][a-z0-9_+.-]*$/.test(t))).toBe(true);
    expect((await d.list({ platform, fleet: labels.fleet }, {})).map((n) => n.labels)).toEqual([labels]);
    expect(existsSync(canary)).toBe(false);
    await d.destroy(r.nodeId, {});
    // Hostnames and node ids name things (VMs, files, the guest): such values are refused before anything is made.
    await expect(d.create(request(`${platform}-odd-0002`, `odd;touch ${canary}`, labels), {})).rejects.toThrow(/invalid hostname/);
    await expect(d.create(request(`${platform}-odd-$(touch ${canary})`, 'odd-3', labels), {})).rejects.toThrow(/invalid node id/);
    expect(viaSsh().filter((i) => i.argv[0] === 'create' && !i.argv.includes(r.nodeId) && i.argv.some((a) => a.includes('odd-')))).toEqual([]);
    expect(existsSync(canary)).toBe(false);
  });

  test('destroy removes VMs, disks, cloud-init volumes and snippets; a VM KubeDos does not own is never touched, even when asked', async () => {
    const d = driver();
    const ours = await d.list({ platform }, {});
    const vmids = await Promise.all(ours.map((n) => d.vmidOf(n.nodeId)));
    expect(ours.map((n) => n.nodeId)).toEqual([1, 2, 3, 4, 5].map((n) => `${platform}-web-000${n}`));
    await Promise.all(ours.map((n) => d.destroy(n.nodeId, {})));

    expect(await d.list({}, {})).toEqual([]);
    expect(pve.vmids()).toEqual([9000, 9001, OUTSIDE]);
    for (const vmid of vmids) expect(pve.volumes().filter((v) => v.includes(`vm-${vmid}-`))).toEqual([]);
    expect((await fs.readdir(path.join(pve.localDir, 'snippets'))).filter((f) => f.startsWith('kubedos-'))).toEqual([]);
    expect(await fs.readdir(path.join(tmp, 'host', 'kubedos', 'console'))).toEqual([]);
    expect(await fs.readdir(pve.runDir)).toEqual([]); // no VM process left
    // Asked for by name or node id: the hand-made VM, the one wearing our tag, ours from another range.
    for (const nodeId of ['legacy-db', `${platform}-web-0001`, `${platform}-web-0009`]) await d.destroy(nodeId, {});
    expect(pve.vmids()).toEqual([9000, 9001, OUTSIDE]);
    expect(touched().filter((v) => [9000, 9001, OUTSIDE].includes(v))).toEqual([]);
    expect(touched().every((v) => v >= RANGE[0] && v <= RANGE[1])).toBe(true);
  });

  test('a wrong host key is refused before any command runs', async () => {
    const before = pve.invocations().length;
    const d = driver({ ssh: { ...pve.spec().ssh, hostKey: generateIdentity('impostor').hostKeyPublic } });
    await expect(d.list({}, {})).rejects.toBeInstanceOf(HostKeyMismatchError);
    await expect(d.destroy(`${platform}-web-0001`, {})).rejects.toBeInstanceOf(HostKeyMismatchError);
    expect(pve.invocations().length).toBe(before);
  });

  describe('through the fleet workflow (dev server, deploy worker on its own queue)', () => {
    let env: TestEnv;
    const workers: Worker[] = [];
    const running: Promise<void>[] = [];

    beforeAll(async () => {
      env = await connectTestEnv();
    });

    afterAll(async () => {
      for (const w of workers) w.shutdown();
      await Promise.allSettled(running);
      await env?.close();
    });

    test('a fleet of 2 is deployed, becomes ready on its consoles, and teardown leaves nothing', async () => {
      const id = randomUUID().slice(0, 8);
      const fleetPlatform = `f${id}`;
      const target: TargetRef = { name: 'pve', spec: pve.spec({ vmidRange: RANGE }) };
      const fleetDriver = driver();
      const kvmQueue = `t-${id}-kvm`;
      const controlQueue = `t-${id}-control`;
      const deploy = createDeployActivities({
        driverFor: () => fleetDriver,
        // The verified-fetch path is the store's (tested with it); here the artifact is already local.
        fetchArtifact: async () => ({ format: 'qcow2', ...image }),
      });
      workers.push(await testPoolWorker(env, 'kvm', kvmQueue, deploy as never), await testPoolWorker(env, 'control', controlQueue));
      running.push(...workers.map((w) => w.run()));

      const input: FleetInput = {
        platform: fleetPlatform,
        fleet: 'workers',
        target,
        deployQueue: kvmQueue,
        // What cli/fleets.ts derives from the descriptor: prepareImage fetches this artifact.
        artifactFormat: 'qcow2',
        hostnamePrefix: 'worker',
        authorizedKeys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHfake kubedos-test'],
        healthCheck: { type: 'readiness', timeout: 60_000, interval: 300, retries: 0 },
        rollout: { maxSurge: 1, maxUnavailable: 0, failureThreshold: 1, batchSize: 50 },
        image: { name: 'worker', digest: 'e'.repeat(64) },
        replicas: 2,
      };
      const started = Date.now();
      const handle = await env.client.workflow.start('fleet', { taskQueue: controlQueue, workflowId: fleetWorkflowId(fleetPlatform, 'workers'), args: [input] });
      let vmids: number[] = [];
      try {
        const status = await waitForStatus(handle, (s) => s.phase === 'steady' && readyCount(s) === 2, 120_000);
        console.log(`proxmox (stand-in qm over real sshd), fleet of 2: deploy → ready in ${Date.now() - started} ms; per node ${status.nodes.map((n) => `${n.nodeId} ${n.readyMs} ms`).join(', ')}`);
        const owned = await fleetDriver.list({ platform: fleetPlatform }, {});
        expect(owned.map((n) => [n.nodeId, n.running, n.labels.fleet, n.labels.generation, n.identity])).toEqual(
          status.nodes.map((n) => [n.nodeId, true, 'workers', 1, n.identity]).sort(),
        );
        expect(new Set(owned.map((n) => n.identity!.hostKeyFingerprint)).size).toBe(2);
        vmids = (await Promise.all(owned.map((n) => fleetDriver.vmidOf(n.nodeId)))).map((v) => v!);
        for (const vmid of vmids) expect(vmid >= RANGE[0] && vmid <= RANGE[1]).toBe(true);
      } finally {
        await handle.signal(teardownSignal).catch(() => undefined);
      }
      expect(await handle.result()).toEqual({ fleet: 'workers', destroyed: 2 });
      expect(await fleetDriver.list({ platform: fleetPlatform }, {})).toEqual([]);
      expect(pve.vmids()).toEqual([9000, 9001, OUTSIDE]);
      for (const vmid of vmids) expect(pve.volumes().filter((v) => v.includes(`vm-${vmid}-`))).toEqual([]);
      expect((await fs.readdir(path.join(pve.localDir, 'snippets'))).filter((f) => f.startsWith('kubedos-'))).toEqual([]);
      // Over the whole file: only VMs inside the range were ever stopped or destroyed through SSH.
      expect(touched().every((v) => v >= RANGE[0] && v <= RANGE[1] && v !== 9000 && v !== 9001)).toBe(true);
    });
  });
});
