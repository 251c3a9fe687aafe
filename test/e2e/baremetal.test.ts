/**
 * End to end on real machines in software: four UEFI machines (QEMU under TCG, blank 2 GiB disks)
 * behind OpenStack's Redfish emulator (sushy-tools, libvirt driver) in a network namespace of the
 * test's own, with the network's own DHCP (libvirt's dnsmasq: reservations, and the boot server's
 * iPXE script for network boot, as an operator's DHCP would be set up). Two targets list the same
 * four machines: `rack` installs by virtual media, `rack-pxe` boots them from the network. The
 * fleets run through the real fleet workflow on the run's dev server; the kvm workers are two
 * processes (one of them killed and restarted), fetching the shared test image's iso and pxe
 * artifacts from a signed publication.
 *
 * One install proves several things at once, so the machines run in parallel:
 *  1. a fleet of 2 by virtual media and a fleet of 2 by PXE, at the same time on the same four
 *     machines: distinct machines; healthy over SSH with the host keys the Foundry recorded;
 *     distinct identities, as recorded, read from the machines; the installed disk is what boots,
 *     the PXE nodes run from RAM; the kvm worker of the virtual-media fleet SIGKILLed while its
 *     machines install, another started: one installer and one cidata insert per machine;
 *  2. scale down returns a machine to the inventory (off, ejected, unleased); teardown too;
 *  3. a wrong BMC password and a wrong BMC certificate: a clear, non-retryable failure, one attempt;
 *  4. a rollout reinstalls a machine with the new image and, its check failing, rolls back.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { WorkflowHandle } from '@temporalio/client';
import type { Worker } from '@temporalio/worker';
import { artifactsFromStore, createDeployActivities, type TargetRef } from '../../activities/deploy';
import { fleetInputFromSpec } from '../../src/cli/fleets';
import { freePort } from '../../src/exec/ports';
import { createSshProbe, type ClosableSshProbe } from '../../src/health/ssh-probe';
import { parseSpec } from '../../src/platform/load';
import type { Spec } from '../../src/platform/types';
import { SshClient } from '../../src/ssh';
import { LocalStore } from '../../src/store/local';
import { publishBuild } from '../../src/store/publish';
import { FoundrySigner } from '../../src/store/signing';
import { createDriver } from '../../src/targets';
import type { NodeState } from '../../src/targets/baremetal/driver';
import { BmcMachine } from '../../src/targets/baremetal/machine';
import { RedfishClient } from '../../src/targets/baremetal/redfish';
import { deployUpdate, fleetStatusQuery, fleetWorkflowId, scaleUpdate, teardownSignal, type FleetInput, type FleetStatus } from '../../workflows/fleet-api';
import { startLab, type Lab, type LabMachine } from '../support/baremetal-lab';
import { readyCount, waitForStatus } from '../support/fleet';
import { builtImage, TEST_PLAN, type BuiltImage } from '../support/images';
import { keygen } from '../support/sshd';
import { connectTestEnv, testPoolWorker, type TestEnv } from '../support/temporal';

jest.setTimeout(60 * 60_000);

const ROOT = path.resolve(__dirname, '..', '..');
const CHECK = ['test', '-f', '/var/lib/kubedos/firstboot.done'];

let tmp: string;
let img: BuiltImage;
let lab: Lab;
let env: TestEnv;
let probe: ClosableSshProbe;
let nodeKey: string;
let spec: Spec;
let platform: string;
let v1: string;
let v2: string;
const passwordEnv = `KD_BM_LAB_PASSWORD_${process.pid}`;
const wrongEnv = `KD_BM_LAB_WRONG_${process.pid}`;
const workers: Worker[] = [];
const running: Promise<void>[] = [];
const children: ChildProcess[] = [];
const workerDeaths: string[] = [];
const handles: WorkflowHandle[] = [];
const queues = { control: '', vm: '', pxe: '' };
const homes = { vm: '', pxe: '' };
let workerEnv: NodeJS.ProcessEnv;
const started = Date.now();
const since = () => `${Math.round((Date.now() - started) / 1000)} s`;

/** The kvm worker of the virtual-media fleet, in a process of its own. */
function startVmWorker(): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', path.join(ROOT, 'test/support/kvm-worker-process.ts')], {
      cwd: ROOT,
      env: workerEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let out = '';
    const onData = (d: Buffer) => {
      out += d.toString();
      if (out.includes('worker ready')) resolve(child);
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`kvm worker exited (${code}) before it was ready:\n${out}`)));
    setTimeout(() => reject(new Error(`kvm worker not ready:\n${out}`)), 180_000).unref();
  });
}

function yaml(): string {
  const machines = (withAddress: boolean) =>
    lab.machines
      .map((m) => `      - { name: ${m.name}, bmc: "${lab.bmcUrl}", system: ${m.uuid}, mac: "${m.mac}"${withAddress ? `, address: ${m.address}` : ''} }`)
      .join('\n');
  const target = (provisioning: string, port: number, password: string, fingerprint: string, withAddress: boolean) => `    type: baremetal
    provisioning: ${provisioning}
    credentials: { username: ${lab.user}, passwordEnv: ${password} }
    tls: { fingerprint: "${fingerprint}" }
    bootServer: { url: "http://${lab.hostIp}:${port}", listen: ${lab.hostIp} }
    leaseDir: ${path.join(tmp, 'leases')}
    machines:
${machines(withAddress)}`;
  const check = (timeout: string) => `{ type: ssh, command: [${CHECK.join(', ')}], timeout: ${timeout}, interval: 5s, retries: 0 }`;
  return `apiVersion: kubedos.dev/v1alpha1
kind: Platform
metadata:
  name: ${platform}
base:
  sourceDateEpoch: ${TEST_PLAN.sourceDateEpoch}
images:
  worker:
    authorizedKeys: ["${readFileSync(`${nodeKey}.pub`, 'utf8').trim()}"]
    disk: { size: 2GiB }
    outputs: [iso, pxe]
targets:
  rack:
${target('virtual-media', ports.vm, passwordEnv, lab.cert.fingerprint, true)}
  rack-pxe:
${target('pxe', ports.pxe, passwordEnv, lab.cert.fingerprint, false)}
  rack-wrong-password:
${target('virtual-media', ports.bad, wrongEnv, lab.cert.fingerprint, true)}
  rack-wrong-certificate:
${target('virtual-media', ports.bad, passwordEnv, 'AA:'.repeat(31) + 'AA', true)}
fleets:
  web: { image: worker, target: rack, replicas: 2, healthCheck: ${check('20m')} }
  edge: { image: worker, target: rack-pxe, replicas: 2, healthCheck: ${check('20m')} }
  badpw: { image: worker, target: rack-wrong-password, replicas: 1, healthCheck: ${check('2m')} }
  badcert: { image: worker, target: rack-wrong-certificate, replicas: 1, healthCheck: ${check('2m')} }
`;
}

const ports = { vm: 0, pxe: 0, bad: 0 };
/** The slowest install-to-healthy of the first test: how long a reinstall may take on this machine now. */
let installMs = 0;

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-bm-lab-'));
  const id = randomUUID().slice(0, 6);
  platform = `bm${id}`;
  Object.assign(queues, { control: `t-${id}-control`, vm: `t-${id}-kvm-vm`, pxe: `t-${id}-kvm-pxe` });
  Object.assign(homes, { vm: path.join(tmp, 'home-vm'), pxe: path.join(tmp, 'home-pxe') });
  img = await builtImage();
  if (img.result) console.log(`test image built in ${img.result.totalMs} ms`);
  // Ports for the boot servers, chosen only now: a port chosen before a minutes-long image build
  // could be taken meanwhile by another file's server (the boot servers bind when first used).
  Object.assign(ports, { vm: await freePort(), pxe: await freePort(), bad: await freePort() });
  const t0 = Date.now();
  lab = await startLab({ dir: path.join(tmp, 'lab'), machines: 4, memoryMiB: 2048, diskBytes: TEST_PLAN.image.diskSizeBytes, bootPort: ports.pxe });
  console.log(`lab (libvirtd, network, 4 machines, sushy) up in ${Date.now() - t0} ms`);
  process.env[passwordEnv] = lab.password;
  process.env[wrongEnv] = 'not-the-password';
  nodeKey = await keygen(path.join(tmp, 'node_key'), 'ed25519', 'kubedos-deployer');
  probe = createSshProbe({ identityFile: nodeKey });
  spec = parseSpec(yaml(), path.join(tmp, 'kubedos.yaml'));

  // Two signed publications of the build (v2 differs by its spec digest only: a rollout target).
  const store = new LocalStore(path.join(tmp, 'store'));
  const signer = new FoundrySigner(path.join(tmp, 'keys', 'foundry_ed25519'));
  const allowedSigners = path.join(tmp, 'allowed_signers');
  await fs.writeFile(allowedSigners, `${await signer.allowedSignersLine()}\n`);
  const lockText = await fs.readFile(path.join(img.dir, 'kubedos.lock'), 'utf8');
  v1 = (await publishBuild(store, { outputDir: img.dir, manifest: img.manifest, lockText, specDigest: '1'.repeat(64), signer })).manifest.sha256;
  v2 = (await publishBuild(store, { outputDir: img.dir, manifest: img.manifest, lockText, specDigest: '2'.repeat(64), signer })).manifest.sha256;

  env = await connectTestEnv();
  workerEnv = {
    ...process.env,
    KUBEDOS_HOME: homes.vm,
    KD_WORKER_QUEUE: queues.vm,
    KD_WORKER_STORE: path.join(tmp, 'store'),
    KD_WORKER_ARTIFACTS: path.join(tmp, 'artifacts-vm'),
    KD_WORKER_SIGNERS: allowedSigners,
    KD_WORKER_SSH_KEY: nodeKey,
  };
  // The PXE fleet's kvm worker (and the others') in this process, its state in a home of its own.
  const deploy = createDeployActivities({
    driverFor: (t: TargetRef) => createDriver(t.name, t.spec as never, { stateDir: path.join(homes.pxe, 'targets', t.name) }),
    fetchArtifact: artifactsFromStore(store, path.join(tmp, 'artifacts-pxe'), allowedSigners),
    ssh: probe,
  });
  workers.push(await testPoolWorker(env, 'kvm', queues.pxe, deploy as never), await testPoolWorker(env, 'control', queues.control));
  // A worker of this process that dies would leave its fleet waiting: say so in the failure.
  running.push(...workers.map((w) => w.run().catch((err: Error) => void workerDeaths.push(`${w.options.taskQueue}: ${err.message}`))));
  await startVmWorker();
});

afterAll(async () => {
  for (const h of handles) await h.terminate('test over').catch(() => undefined);
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  for (const w of workers) w.shutdown();
  await Promise.allSettled(running);
  await probe?.close();
  await env?.close();
  await lab?.stop();
  delete process.env[passwordEnv];
  delete process.env[wrongEnv];
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

function input(fleet: string, digest: string): FleetInput {
  const queue = fleet === 'web' ? queues.vm : queues.pxe;
  return fleetInputFromSpec(spec, fleet, { name: img.manifest.image.name, digest }, { deploy: queue });
}

async function startFleet(fleet: string, digest = v1): Promise<WorkflowHandle> {
  const i = input(fleet, digest);
  const handle = await env.client.workflow.start('fleet', { taskQueue: queues.control, workflowId: fleetWorkflowId(i.platform, i.fleet), args: [i] });
  handles.push(handle);
  return handle;
}

async function nodeStates(home: string, target: string): Promise<NodeState[]> {
  const dir = path.join(home, 'targets', target, 'nodes');
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  return Promise.all(names.filter((n) => n.endsWith('.json')).map(async (n) => JSON.parse(await fs.readFile(path.join(dir, n), 'utf8')) as NodeState));
}

async function leases(): Promise<{ nodeId: string; machine: string; target: string }[]> {
  const dir = path.join(tmp, 'leases');
  const names = (await fs.readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.lease'));
  return Promise.all(names.map(async (n) => JSON.parse(await fs.readFile(path.join(dir, n), 'utf8'))));
}

function bmc(m: LabMachine): BmcMachine {
  return new BmcMachine(m.name, new RedfishClient({ machine: m.name, url: lab.bmcUrl, tls: { fingerprint: lab.cert.fingerprint }, username: lab.user, password: lab.password }), m.uuid);
}

const machine = (name: string) => lab.machines.find((m) => m.name === name)!;
/** Requests sushy answered for a machine, by kind (its access log). */
function bmcRequests(m: LabMachine, what: RegExp): number {
  return lab.sushy.log().split('\n').filter((l) => l.includes(`/Systems/${m.uuid}/`) && what.test(l)).length;
}
const INSERTS = /POST \S+\/VirtualMedia\/Cd\/Actions\/VirtualMedia\.InsertMedia/;
/** How often a console line appeared on a machine's serial console (every boot is appended). */
const consoleCount = (m: LabMachine, line: string) => readFileSync(m.serialLog, 'latin1').split(line).length - 1;
const INSTALLING = 'kubedos: installing the disk image';

/** What every node and machine was doing, for a failure message: node phases and last events, console tails. */
async function labReport(): Promise<string> {
  const lines: string[] = [];
  for (const [home, target] of [[homes.vm, 'rack'], [homes.pxe, 'rack-pxe']] as const) {
    for (const s of await nodeStates(home, target)) {
      lines.push(`${target}/${s.nodeId} on ${s.machine}: ${s.phase}; ${s.events.slice(-4).map((e) => `${e.at.slice(11, 19)} ${e.event}`).join(' | ')}`);
    }
  }
  for (const m of lab.machines) {
    const tail = readFileSync(m.serialLog, 'latin1').split('\n').filter((l) => l.trim()).slice(-8).map((l) => l.slice(0, 160));
    lines.push(`${m.name} console: ${tail.join(' / ')}`);
    const requests = lab.sushy.log().split('\n').filter((l) => l.includes(`/Systems/${m.uuid}`) && /\b(POST|PATCH) \//.test(l)).slice(-4).map((l) => l.slice(0, 200));
    lines.push(`${m.name} last BMC changes: ${requests.join(' / ') || 'none'}`);
  }
  if (workerDeaths.length) lines.push(`workers of the test process that died: ${workerDeaths.join('; ')}`);
  lines.push(`load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  return lines.join('\n');
}

async function ssh(host: string, hostKey: string, argv: string[]): Promise<string> {
  const client = await SshClient.connect({ host, port: 22, user: 'root', identityFile: nodeKey, hostKey });
  try {
    return (await client.run(argv)).stdout.trim();
  } finally {
    await client.close();
  }
}

test('a fleet by virtual media and a fleet by PXE on the same four machines, their worker killed mid-install: healthy, distinct, each machine installed once', async () => {
  const web = await startFleet('web');
  const edge = await startFleet('edge');

  // Kill the virtual-media fleet's worker while both its machines install; start another.
  const deadline = Date.now() + 15 * 60_000;
  while ((await nodeStates(homes.vm, 'rack')).filter((s) => s.phase === 'installing').length < 2) {
    if (Date.now() > deadline) throw new Error(`the installs never started: ${JSON.stringify(await nodeStates(homes.vm, 'rack'))}`);
    await sleep(1_000);
  }
  console.log(`[${since()}] both virtual-media machines installing: SIGKILL their worker`);
  const victim = children.at(-1)!;
  victim.kill('SIGKILL');
  await new Promise((r) => victim.once('exit', r));
  await startVmWorker();
  console.log(`[${since()}] a new kvm worker took over`);

  const healthy = (s: FleetStatus) => s.phase === 'steady' && readyCount(s) === 2;
  const [webStatus, edgeStatus] = await Promise.all([waitForStatus(web, healthy, 30 * 60_000), waitForStatus(edge, healthy, 30 * 60_000)]).catch(async (err: Error) => {
    throw new Error(`${err.message}\n${await labReport()}`);
  });
  console.log(`[${since()}] both fleets healthy; per node ${[...webStatus.nodes, ...edgeStatus.nodes].map((n) => `${n.nodeId} ${n.readyMs} ms`).join(', ')} (load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')})`);
  installMs = Math.max(...webStatus.nodes.map((n) => n.readyMs ?? 0));

  // Four nodes, four machines: the two targets share the inventory and never a machine.
  const vmStates = await nodeStates(homes.vm, 'rack');
  const pxeStates = await nodeStates(homes.pxe, 'rack-pxe');
  const all = [...vmStates, ...pxeStates];
  expect(all.map((s) => s.phase)).toEqual(['up', 'up', 'up', 'up']);
  expect(new Set(all.map((s) => s.machine)).size).toBe(4);
  expect((await leases()).map((l) => `${l.target}/${l.nodeId}@${l.machine}`).sort()).toEqual(all.map((s) => `${s.method === 'pxe' ? 'rack-pxe' : 'rack'}/${s.nodeId}@${s.machine}`).sort());
  const nodes = [...webStatus.nodes, ...edgeStatus.nodes];
  expect(nodes.every((n) => n.attempts === 1)).toBe(true);
  expect(new Set(nodes.map((n) => n.identity!.machineId)).size).toBe(4);
  expect(new Set(nodes.map((n) => n.identity!.hostKeyFingerprint)).size).toBe(4);

  for (const n of nodes) {
    const state = all.find((s) => s.nodeId === n.nodeId)!;
    const m = machine(state.machine);
    const host = state.method === 'pxe' ? state.seedFrom! : m.address;
    expect(host).toBe(m.address); // a PXE node's address was learnt from its seed request: the reservation
    const id = n.identity!;
    const sh = (argv: string[]) => ssh(host, id.hostKeyPublic, argv);
    expect(await sh(['hostname'])).toBe(n.hostname);
    expect(await sh(['cat', '/etc/machine-id'])).toBe(id.machineId);
    expect(await sh(['ssh-keygen', '-l', '-E', 'sha256', '-f', '/etc/ssh/ssh_host_ed25519_key.pub'])).toContain(id.hostKeyFingerprint);
    expect((await sh(['ls', '/etc/ssh'])).split('\n').filter((f) => f.startsWith('ssh_host_'))).toEqual(['ssh_host_ed25519_key', 'ssh_host_ed25519_key.pub']);
    const root = await sh(['findmnt', '-n', '-o', 'FSTYPE,SOURCE', '/']);
    if (state.method === 'pxe') {
      // From RAM, its identity fetched over HTTP from the boot server under its own token.
      expect(root).toMatch(/^overlay\s/);
      expect(await sh(['cat', '/proc/cmdline'])).toContain(`ds=nocloud;s=http://${lab.hostIp}:${ports.pxe}/j/${state.token}/seed/`);
      expect(readFileSync(m.serialLog, 'latin1')).toContain(`kubedos: nocloud-net: read meta-data and user-data from ${lab.hostIp}:${ports.pxe}`);
    } else {
      // From the disk the installer wrote; its identity from the cidata CD, ejected since.
      expect(root).toMatch(/^ext4\s+\/dev\/vda/);
      expect((await lab.diskHead(m)).subarray(512, 520).toString('latin1')).toBe('EFI PART');
      expect((await bmc(m).media()).inserted).toBe(false);
      expect(await bmc(m).bootOverride()).toMatchObject({ target: 'Hdd' });
      // Installed once, although its worker died mid-install: its console shows one install, and
      // the installer and the cidata ISO went into its CD (an insert the BMC was slow to answer
      // may have been sent again, before anything booted).
      expect(consoleCount(m, INSTALLING)).toBe(1);
      expect(consoleCount(m, 'kubedos: installed to /dev/vda; powering off')).toBe(1);
      expect(bmcRequests(m, INSERTS)).toBeGreaterThanOrEqual(2);
      expect(state.events.filter((e) => e.event === 'installer done (powered off)')).toHaveLength(1);
      expect(readFileSync(m.serialLog, 'latin1')).toContain('kubedos: nocloud: seed on /dev/sr0');
    }
  }
  // The seeds (private host keys) are gone from the workers once the nodes are up.
  expect(await fs.readdir(path.join(homes.vm, 'targets', 'rack', 'seeds'))).toEqual([]);
  expect(await fs.readdir(path.join(homes.pxe, 'targets', 'rack-pxe', 'seeds'))).toEqual([]);
});

test('scale down and teardown give the machines back: off, ejected, unleased', async () => {
  const web = env.client.workflow.getHandle(fleetWorkflowId(platform, 'web'));
  const before = (await web.query(fleetStatusQuery)).nodes.map((n) => n.nodeId);
  expect(await web.executeUpdate(scaleUpdate, { args: [1] })).toBe(1);
  const after = await waitForStatus(web, (s) => s.phase === 'steady' && s.nodes.length === 1 && readyCount(s) === 1, 10 * 60_000);
  const gone = before.find((id) => !after.nodes.some((n) => n.nodeId === id))!;
  const goneState = (await leases()).find((l) => l.nodeId === gone);
  expect(goneState).toBeUndefined();
  expect((await nodeStates(homes.vm, 'rack')).map((s) => s.nodeId)).toEqual(after.nodes.map((n) => n.nodeId));
  const webMachines = new Set((await nodeStates(homes.vm, 'rack')).map((s) => s.machine));

  const edge = env.client.workflow.getHandle(fleetWorkflowId(platform, 'edge'));
  const edgeMachines = (await nodeStates(homes.pxe, 'rack-pxe')).map((s) => s.machine);
  await edge.signal(teardownSignal);
  expect(await edge.result()).toEqual({ fleet: 'edge', destroyed: 2 });
  expect((await leases()).map((l) => l.nodeId)).toEqual(after.nodes.map((n) => n.nodeId));
  for (const m of lab.machines.filter((x) => !webMachines.has(x.name))) {
    expect(await bmc(m).power()).toBe('Off');
    expect((await bmc(m).media()).inserted).toBe(false);
    expect(lab.virsh(['domstate', m.domain]).trim()).toBe('shut off');
  }
  expect(edgeMachines).toHaveLength(2);
  console.log(`[${since()}] scaled down and torn down`);
});

test('a wrong BMC password and a wrong BMC certificate: clear, non-retryable failures after one attempt', async () => {
  const [badpw, badcert] = [await startFleet('badpw'), await startFleet('badcert')];
  for (const [handle, type, words] of [
    [badpw, 'BmcAuthError', `refused user "${lab.user}" (HTTP 401)`],
    [badcert, 'BmcCertificateError', 'its certificate is not the pinned one'],
  ] as const) {
    const status = await waitForStatus(handle, (s) => s.nodes.some((n) => n.state === 'failed'), 5 * 60_000);
    expect(status.nodes[0]!.error).toContain(words);
    // The node's createNode activity ran once and failed as its class, non-retryable.
    const node = env.client.workflow.getHandle(`${fleetWorkflowId(platform, status.fleet)}/node/${status.nodes[0]!.nodeId}`);
    const events = (await node.fetchHistory()).events!;
    const startedAttempts = events.filter((e) => e.activityTaskStartedEventAttributes).map((e) => e.activityTaskStartedEventAttributes!.attempt);
    const failures = events.filter((e) => e.activityTaskFailedEventAttributes).map((e) => e.activityTaskFailedEventAttributes!.failure!);
    expect(startedAttempts.every((a) => a === 1)).toBe(true);
    const created = failures.map((f) => f.applicationFailureInfo ?? f.cause?.applicationFailureInfo).find((i) => i?.type === type);
    expect(created).toMatchObject({ type, nonRetryable: true });
    await handle.signal(teardownSignal);
    await handle.result();
  }
  expect((await leases()).every((l) => l.target === 'rack')).toBe(true);
});

test('a rollout reinstalls a machine with the new image; its check fails, so it rolls back and gives the machine back', async () => {
  const web = env.client.workflow.getHandle(fleetWorkflowId(platform, 'web'));
  const old = (await web.query(fleetStatusQuery)).nodes[0]!;
  const installsBefore = new Map(lab.machines.map((m) => [m.name, consoleCount(m, INSTALLING)]));
  const template = { ...input('web', v2) } as Partial<FleetInput>;
  delete template.image;
  delete template.replicas;
  // Generation 2 must pass a check it cannot: it is installed, reachable with its own key, and fails.
  // Its deadline: 1.3 times the slowest install of the first test (this machine's speed right now,
  // so a slower machine waits longer); the check polls until then, which is most of this test.
  const failing = { type: 'ssh' as const, command: ['test', '-e', '/etc/kubedos-generation-2'], timeout: Math.max(3 * 60_000, Math.round(installMs * 1.3)), interval: 5_000, retries: 0 };
  const rolloutStarted = Date.now();
  const { generation } = await web.executeUpdate(deployUpdate, { args: [{ image: { name: img.manifest.image.name, digest: v2 }, template: { ...(template as FleetInput), healthCheck: failing } }] });
  expect(generation).toBe(2);
  const status = await waitForStatus(web, (s) => s.rollouts.length > 0 && s.phase !== 'rolling-out', 30 * 60_000);
  console.log(`[${since()}] rollout rolled back after ${Date.now() - rolloutStarted} ms`);
  expect(status.rollouts.at(-1)).toMatchObject({ outcome: 'rolled-back', from: 1, to: 2 });
  // It failed where it should: installed, booted, answering SSH with its recorded key, check exit 1.
  // Anything else (twice here: the reinstalled machine unreachable) is reported with the lab's state.
  const rolloutError = status.rollouts.at(-1)!.error ?? '';
  if (!/did not pass its ssh check .*ssh command exited 1/.test(rolloutError)) throw new Error(`the rollout failed elsewhere than its check: ${rolloutError}\n${await labReport()}`);
  expect(status.generation).toBe(1);
  // The node that failed is destroyed (its machine given back, below) and kept in the status as a record.
  expect(status.nodes.filter((n) => n.state !== 'failed').map((n) => [n.nodeId, n.state])).toEqual([[old.nodeId, 'ready']]);
  expect(status.nodes.filter((n) => n.state === 'failed')).toHaveLength(1);
  expect(await ssh(machine((await nodeStates(homes.vm, 'rack'))[0]!.machine).address, old.identity!.hostKeyPublic, ['hostname'])).toBe(old.hostname);
  // One machine installed the new image (its console), and is back in the inventory.
  const reinstalled = lab.machines.filter((m) => consoleCount(m, INSTALLING) - installsBefore.get(m.name)! === 1);
  expect(reinstalled).toHaveLength(1);
  expect((await leases()).map((l) => l.nodeId)).toEqual([old.nodeId]);
  expect(await bmc(reinstalled[0]!).power()).toBe('Off');
  expect((await bmc(reinstalled[0]!).media()).inserted).toBe(false);

  await web.signal(teardownSignal);
  // Teardown counts every node the fleet has a record of: the ready one and the failed one.
  expect(await web.result()).toEqual({ fleet: 'web', destroyed: 2 });
  expect(await leases()).toEqual([]);
  console.log(`[${since()}] done`);
});
