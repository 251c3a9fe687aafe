/**
 * End to end on real VMs: the fleet workflow (real dev server; a control worker and a kvm-pool
 * worker in this process) deploys 2 nodes of the shared test image to a QEMU target reached over
 * SSH to localhost — a real sshd (test/support/sshd.ts) pinned by its host key. The image comes
 * from a signed publication in a local artifact store, fetched and verified as the kvm worker
 * does it, then uploaded to the "remote" host with resume and verification. Under TCG (no KVM
 * here) each VM boots in 1–3 minutes depending on load; the two boot in parallel.
 *
 * Checked: both nodes pass an `ssh` health check over the host key the Foundry recorded (a wrong
 * key is refused); their host keys, machine-ids and hostnames — read from the guests over SSH and
 * from their consoles — are distinct and match the records; each VM runs with the machine-id as
 * its SMBIOS UUID and only the pinned host key; teardown leaves no QEMU process, clone or seed.
 * Also, without booting: a local-host VM is found again by a fresh driver (a worker restart) and
 * stopped through QMP.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, promises as fs, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Worker } from '@temporalio/worker';
import { artifactsFromStore, createDeployActivities, type TargetRef } from '../../activities/deploy';
import { HostKeyMismatchError } from '../../src/errors';
import { createSshProbe, type ClosableSshProbe } from '../../src/health/ssh-probe';
import type { BuildPlan } from '../../src/foundry';
import type { TargetOf } from '../../src/platform/types';
import { SshClient } from '../../src/ssh';
import { LocalStore } from '../../src/store/local';
import { publishBuild } from '../../src/store/publish';
import { FoundrySigner } from '../../src/store/signing';
import { generateIdentity } from '../../src/targets/identity';
import { QemuDriver } from '../../src/targets/qemu/driver';
import { QmpClient } from '../../src/targets/qemu/qmp';
import { fleetWorkflowId, teardownSignal, type FleetInput } from '../../workflows/fleet-api';
import { readyCount, waitForStatus } from '../support/fleet';
import { builtImage, TEST_PLAN, type BuiltImage } from '../support/images';
import { keygen, startSshd, type SshdServer } from '../support/sshd';
import { connectTestEnv, testPoolWorker, type TestEnv } from '../support/temporal';

jest.setTimeout(40 * 60 * 1000);

/** The shared test image, qcow2 only (what this target consumes; built in seconds from the shared caches). */
const QEMU_PLAN: BuildPlan = { ...TEST_PLAN, formats: ['qcow2'] };
const GiB = 1024 * 1024 * 1024;

let tmp: string;
let img: BuiltImage;
let sshd: SshdServer;
let env: TestEnv;
let nodeKey: string;
let probe: ClosableSshProbe;
const workers: Worker[] = [];
const running: Promise<void>[] = [];
const drivers: QemuDriver[] = [];

/** Live QEMU processes whose command line mentions `marker` (a test's state directory). */
function qemuPids(marker: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      if (!argv[0]?.endsWith('qemu-system-x86_64') || !argv.some((a) => a.includes(marker))) continue;
      if (/\) Z /.test(readFileSync(`/proc/${name}/stat`, 'utf8'))) continue;
      pids.push(Number(name));
    } catch {
      /* gone meanwhile */
    }
  }
  return pids;
}

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-fleet-qemu-'));
  [img, sshd] = await Promise.all([builtImage(QEMU_PLAN), startSshd()]);
  nodeKey = await keygen(path.join(tmp, 'node_key'), 'ed25519', 'kubedos-deployer');
  probe = createSshProbe({ identityFile: nodeKey });
  env = await connectTestEnv();
});

afterAll(async () => {
  // Whatever happened above: no VM outlives the test.
  for (const pid of tmp ? qemuPids(tmp) : []) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  for (const w of workers) w.shutdown();
  await Promise.allSettled(running);
  await probe?.close();
  for (const d of drivers) await d.close().catch(() => undefined);
  await env?.close();
  await sshd?.stop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

function qemuSpec(host: TargetOf<'qemu'>['host']): TargetOf<'qemu'> {
  return { type: 'qemu', host, accel: 'auto', memory: 1 * GiB, cpus: 2, network: 'user' } as TargetOf<'qemu'>;
}

test('a fleet of 2 on QEMU over SSH: healthy over pinned node keys, identities as recorded, nothing left after teardown', async () => {
  // A signed publication of the image, in a store of the test's own, trusted through allowed_signers.
  const store = new LocalStore(path.join(tmp, 'store'));
  const signer = new FoundrySigner(path.join(tmp, 'keys', 'foundry_ed25519'));
  const allowedSigners = path.join(tmp, 'allowed_signers');
  await fs.writeFile(allowedSigners, `${await signer.allowedSignersLine()}\n`);
  const lockText = await fs.readFile(path.join(img.dir, 'kubedos.lock'), 'utf8');
  const published = await publishBuild(store, { outputDir: img.dir, manifest: img.manifest, lockText, specDigest: 'f'.repeat(64), signer });

  const id = randomUUID().slice(0, 8);
  const platform = `q${id}`;
  const remoteState = path.join(tmp, 'remote-state');
  const target: TargetRef = { name: 'qemu-ssh', spec: qemuSpec({ port: 22, user: 'root', ...sshd.target() } as TargetOf<'qemu'>['host']) };
  const driverFor = (t: TargetRef) => {
    const d = new QemuDriver(t.name, t.spec as TargetOf<'qemu'>, { stateDir: path.join(tmp, 'local-state') }, { remoteStateDir: remoteState });
    drivers.push(d);
    return d;
  };
  const kvmQueue = `t-${id}-kvm`;
  const controlQueue = `t-${id}-control`;
  const deploy = createDeployActivities({
    driverFor,
    fetchArtifact: artifactsFromStore(store, path.join(tmp, 'artifacts'), allowedSigners),
    ssh: probe,
  });
  workers.push(await testPoolWorker(env, 'kvm', kvmQueue, deploy as never), await testPoolWorker(env, 'control', controlQueue));
  running.push(...workers.map((w) => w.run()));

  const input: FleetInput = {
    platform,
    fleet: 'workers',
    target,
    deployQueue: kvmQueue,
    hostnamePrefix: 'worker',
    authorizedKeys: [readFileSync(`${nodeKey}.pub`, 'utf8').trim()],
    // Healthy = the guest answers over SSH with the host key the Foundry recorded, and first boot is done.
    healthCheck: { type: 'ssh', command: ['test', '-f', '/var/lib/kubedos/firstboot.done'], timeout: 15 * 60_000, interval: 5_000, retries: 0 },
    rollout: { maxSurge: 1, maxUnavailable: 0, failureThreshold: 1, batchSize: 50 },
    image: { name: img.manifest.image.name, digest: published.manifest.sha256 },
    replicas: 2,
  };
  const started = Date.now();
  const handle = await env.client.workflow.start('fleet', { taskQueue: controlQueue, workflowId: fleetWorkflowId(platform, 'workers'), args: [input] });
  try {
    const status = await waitForStatus(handle, (s) => s.phase === 'steady' && readyCount(s) === 2, 20 * 60_000);
    const healthyMs = Date.now() - started;
    console.log(
      `QEMU over SSH (TCG), 2 nodes: deploy → healthy in ${healthyMs} ms, of which image fetch + verify + upload ≈ ${healthyMs - Math.max(...status.nodes.map((n) => n.readyMs ?? 0))} ms; ` +
        `per node (create, start, boot, ssh check) ${status.nodes.map((n) => `${n.nodeId} ${n.readyMs} ms`).join(', ')} (load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')})`,
    );

    // Distinct identities, as recorded by the Foundry, are what the guests really have.
    const ids = status.nodes.map((n) => n.identity!);
    expect(new Set(ids.map((i) => i.machineId)).size).toBe(2);
    expect(new Set(ids.map((i) => i.hostKeyFingerprint)).size).toBe(2);
    const driver = driverFor(target);
    const owned = await driver.list({ platform }, {});
    expect(owned.map((n) => [n.nodeId, n.running, n.labels.fleet, n.labels.generation])).toEqual(status.nodes.map((n) => [n.nodeId, true, 'workers', 1]).sort());
    for (const node of status.nodes) {
      const recorded = node.identity!;
      expect(await driver.readiness(node.nodeId, {})).toBe(true);
      const address = await driver.address(node.nodeId, {});
      const client = await SshClient.connect({ host: address.host, port: address.ports[22]!, user: 'root', identityFile: nodeKey, hostKey: recorded.hostKeyPublic });
      try {
        expect(client.hostKeyFingerprint).toBe(recorded.hostKeyFingerprint);
        const sh = async (argv: string[]) => (await client.run(argv)).stdout.trim();
        expect(await sh(['hostname'])).toBe(node.hostname);
        expect(await sh(['cat', '/etc/machine-id'])).toBe(recorded.machineId);
        // The running system booted with it: systemd took it from the VM's SMBIOS UUID.
        expect((await sh(['cat', '/sys/class/dmi/id/product_uuid'])).replace(/-/g, '')).toBe(recorded.machineId);
        expect(await sh(['ssh-keygen', '-l', '-E', 'sha256', '-f', '/etc/ssh/ssh_host_ed25519_key.pub'])).toContain(recorded.hostKeyFingerprint);
        // Only the pinned key exists: no unrecorded RSA/ECDSA keys were generated.
        expect((await sh(['ls', '/etc/ssh'])).split('\n').filter((f) => f.startsWith('ssh_host_'))).toEqual(['ssh_host_ed25519_key', 'ssh_host_ed25519_key.pub']);
      } finally {
        await client.close();
      }
      // The console tells the same story.
      const consoleLog = readFileSync(path.join(remoteState, 'nodes', node.nodeId, 'console.log'), 'utf8');
      expect(consoleLog).toContain(`kubedos: hostkey 256 ${recorded.hostKeyFingerprint} root@${node.hostname} (ED25519)`);
      expect(consoleLog).toContain(`kubedos: nocloud: machine-id ${recorded.machineId}`);
      // A check pinned to another key is refused, never trusted.
      const other = generateIdentity('other');
      await expect(probe({ host: address.host, port: address.ports[22]!, hostKey: other.hostKeyPublic }, ['true'])).rejects.toBeInstanceOf(HostKeyMismatchError);
    }
    expect(qemuPids(remoteState)).toHaveLength(2);
  } finally {
    await handle.signal(teardownSignal).catch(() => undefined);
  }
  expect(await handle.result()).toEqual({ fleet: 'workers', destroyed: 2 });
  expect(qemuPids(remoteState)).toEqual([]);
  expect(await fs.readdir(path.join(remoteState, 'nodes'))).toEqual([]);
  // What stays is the prepared base image, once per digest (the next deploy of it is instant).
  const qcow2 = img.manifest.artifacts.find((a) => a.format === 'qcow2')!;
  expect(await fs.readdir(path.join(remoteState, 'images'))).toEqual([`${qcow2.sha256}.qcow2`]);
});

test('a local VM outlives its driver (a worker restart), is found again, and QMP quit stops it', async () => {
  const qcow2 = img.manifest.artifacts.find((a) => a.format === 'qcow2')!;
  const stateDir = path.join(tmp, 'local');
  const spec = qemuSpec('local');
  const first = new QemuDriver('local-qemu', spec, { stateDir });
  drivers.push(first);
  const prepared = await first.prepare({ name: 'kubedos-test', digest: 'd'.repeat(64), artifact: { format: 'qcow2', sha256: qcow2.sha256, size: qcow2.size, path: img.artifacts.qcow2! } }, {});
  expect(prepared.location).toBe(path.join(stateDir, 'images', `${qcow2.sha256}.qcow2`));
  const labels = { platform: 'local', fleet: 'w', generation: 3, image: 'kubedos-test', imageDigest: 'd'.repeat(64) };
  const identity = generateIdentity('solo-0001');
  const created = await first.create({ nodeId: 'local-w-0001', labels, image: prepared, identity, authorizedKeys: [] }, {});
  // A retried create keeps the node and returns the identity it really has.
  expect(await first.create({ nodeId: 'local-w-0001', labels, image: prepared, identity: generateIdentity('solo-0001'), authorizedKeys: [] }, {})).toEqual(created);
  const dir = path.join(stateDir, 'nodes', 'local-w-0001');
  expect((await fs.stat(path.join(dir, 'seed.qcow2'))).mode & 0o777).toBe(0o600);
  await first.start('local-w-0001', {});
  const pid = Number(readFileSync(path.join(dir, 'qemu.pid'), 'utf8'));
  expect(qemuPids(dir)).toEqual([pid]);
  await first.close();

  const second = new QemuDriver('local-qemu', spec, { stateDir });
  drivers.push(second);
  await second.start('local-w-0001', {}); // already running: found again, not started twice
  expect(qemuPids(dir)).toEqual([pid]);
  expect(await second.list({ fleet: 'w' }, {})).toEqual([{ nodeId: 'local-w-0001', labels, identity: created, running: true }]);
  const address = await second.address('local-w-0001', {});
  expect(address.host).toBe('127.0.0.1');
  expect(address.ports[22]).toBeGreaterThan(0);
  expect(await second.readiness('local-w-0001', {})).toBe(false);
  // Its QMP socket answers (destroy quits through it).
  const qmp = await QmpClient.connectUnix(path.join(dir, 'qmp.sock'));
  expect(await qmp.execute('query-name')).toEqual({ name: 'local-w-0001' });
  expect(await qmp.execute('query-status')).toMatchObject({ running: true });
  qmp.close();

  const stopping = Date.now();
  await second.destroy('local-w-0001', {});
  console.log(`local destroy (QMP quit): ${Date.now() - stopping} ms`);
  expect(qemuPids(dir)).toEqual([]);
  expect(existsSync(dir)).toBe(false);
  expect(await second.list({}, {})).toEqual([]);
  await second.destroy('local-w-0001', {}); // absent is fine
});
