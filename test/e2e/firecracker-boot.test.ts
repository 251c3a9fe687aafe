/**
 * Real guests on a Firecracker target: the fleet workflow (dev server; control and kvm workers in
 * this process) deploys 3 microVMs of the shared test image's Firecracker bundle — fetched from a
 * signed publication in a local artifact store, every file of the bundle verified — to a test host
 * reached over SSH (a network namespace with a real sshd, bridge and taps; see
 * test/support/firecracker-host.ts). The host's firecracker and jailer are the STAND-IN
 * (test/support/firecracker-standin): Firecracker cannot run here, so on InstanceStart the
 * stand-in boots exactly what the driver configured through the API — kernel, initrd, the shared
 * rootfs read-only, the node's writable layer, the boot arguments — under `qemu-system-x86_64 -M
 * microvm` (TCG), and serves the node's MMDS document to the guest. Each guest's overlay init puts
 * its layer over the read-only root, its MMDS reader applies the identity, and it reports ready.
 *
 * Checked: 3 ready nodes with distinct identities, each the one its console shows the guest
 * applied (hostname, machine-id, the Foundry's host key and no other), over a shared read-only
 * rootfs (every QEMU opened it read-only) with layers that hold only what each node wrote;
 * teardown leaves no process, tap, jail or state.
 */
import { randomUUID } from 'node:crypto';
import { promises as fs, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Worker } from '@temporalio/worker';
import { artifactsFromStore, createDeployActivities, type TargetRef } from '../../activities/deploy';
import type { TargetOf } from '../../src/platform/types';
import { LocalStore } from '../../src/store/local';
import { publishBuild } from '../../src/store/publish';
import { FoundrySigner } from '../../src/store/signing';
import { FirecrackerDriver } from '../../src/targets/firecracker/driver';
import { jailId } from '../../src/targets/firecracker/names';
import { fleetWorkflowId, teardownSignal, type FleetInput, type FleetStatus } from '../../workflows/fleet-api';
import { readyCount } from '../support/fleet';
import { entries, sharedMount, startFirecrackerHost, waitForFleet, type FirecrackerTestHost } from '../support/firecracker-host';
import { builtImage, type BuiltImage } from '../support/images';
import { connectTestEnv, testPoolWorker, type TestEnv } from '../support/temporal';

// Sized for a loaded 2-CPU box (measured at load 10: a cold build of the shared test image ~6 min
// in beforeAll when no other test built it first; publish, fetch and upload of the 2 GiB bundle
// ~80 s; three TCG boots to ready ~160 s each, in parallel).
jest.setTimeout(20 * 60_000);

const MiB = 2 ** 20;

let tmp: string;
let mount: string;
let img: BuiltImage;
let host: FirecrackerTestHost;
let env: TestEnv;
const workers: Worker[] = [];
const running: Promise<void>[] = [];
const drivers: FirecrackerDriver[] = [];

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-fc-boot-'));
  mount = sharedMount();
  [img, host] = await Promise.all([builtImage(), startFirecrackerHost(mount, { boot: true })]);
  env = await connectTestEnv();
});

afterAll(async () => {
  for (const w of workers) w.shutdown();
  await Promise.allSettled(running);
  for (const d of drivers) await d.close().catch(() => undefined);
  await env?.close();
  await host?.stop();
  if (mount) await fs.rm(mount, { recursive: true, force: true });
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

test('a fleet of 3 microVMs boots (stand-in VMM: QEMU -M microvm) over one read-only rootfs, each with its own identity from MMDS; teardown leaves nothing', async () => {
  const store = new LocalStore(path.join(tmp, 'store'));
  const signer = new FoundrySigner(path.join(tmp, 'keys', 'foundry_ed25519'));
  const allowedSigners = path.join(tmp, 'allowed_signers');
  await fs.writeFile(allowedSigners, `${await signer.allowedSignersLine()}\n`);
  const lockText = await fs.readFile(path.join(img.dir, 'kubedos.lock'), 'utf8');
  const published = await publishBuild(store, { outputDir: img.dir, manifest: img.manifest, lockText, specDigest: 'f'.repeat(64), signer });

  const id = randomUUID().slice(0, 8);
  const platform = `b${id}`;
  const spec = {
    type: 'firecracker',
    hosts: [host.connection()],
    firecracker: host.firecracker,
    jailer: host.jailer,
    chrootBase: host.chrootBase,
    uid: 10_000,
    gid: 10_000,
    cgroupVersion: 2,
    network: { bridge: host.bridge },
    limits: { cpuOversubscription: 4, memoryOversubscription: 1 },
    layerSize: 2048 * MiB,
    memory: 512 * MiB,
    cpus: 1,
  } as TargetOf<'firecracker'>;
  const target: TargetRef = { name: 'fc', spec };
  const driverFor = (t: TargetRef) => {
    const d = new FirecrackerDriver(t.name, t.spec as TargetOf<'firecracker'>, { stateDir: path.join(tmp, 'local-state') }, { cgroupRoot: host.cgroupRoot });
    drivers.push(d);
    return d;
  };
  const kvmQueue = `t-${id}-kvm`;
  const controlQueue = `t-${id}-control`;
  const deploy = createDeployActivities({ driverFor, fetchArtifact: artifactsFromStore(store, path.join(tmp, 'artifacts'), allowedSigners) });
  workers.push(await testPoolWorker(env, 'kvm', kvmQueue, deploy as never), await testPoolWorker(env, 'control', controlQueue));
  running.push(...workers.map((w) => w.run()));

  const input: FleetInput = {
    platform,
    fleet: 'qa',
    target,
    deployQueue: kvmQueue,
    artifactFormat: 'firecracker',
    hostnamePrefix: 'qa-worker',
    authorizedKeys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHfake kubedos-test'],
    healthCheck: { type: 'readiness', timeout: 10 * 60_000, interval: 2_000, retries: 0 },
    rollout: { maxSurge: 3, maxUnavailable: 0, failureThreshold: 1, batchSize: 3 },
    image: { name: img.manifest.image.name, digest: published.manifest.sha256 },
    replicas: 3,
  };
  const started = Date.now();
  const handle = await env.client.workflow.start('fleet', { taskQueue: controlQueue, workflowId: fleetWorkflowId(platform, 'qa'), args: [input] });
  const nodesDir = host.local(path.join(host.chrootBase, 'kubedos', 'fc', 'nodes'));
  let status: FleetStatus;
  try {
    status = await waitForFleet(handle, (s) => s.phase === 'steady' && readyCount(s) === 3, 12 * 60_000);
  } catch (err) {
    // How far each guest got, before teardown removes the consoles.
    for (const node of entries(nodesDir)) console.log(`${node} console (tail):\n${readFileSync(path.join(nodesDir, node, 'console.log'), 'utf8').split('\n').slice(-25).join('\n')}`);
    await handle.signal(teardownSignal).catch(() => undefined);
    throw err;
  }
  try {
    console.log(
      `firecracker (stand-in VMM booting QEMU -M microvm, TCG) fleet of 3: deploy → ready in ${Date.now() - started} ms; per node ${status.nodes.map((n) => `${n.nodeId} ${n.readyMs} ms`).join(', ')} (load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')})`,
    );
    const ids = status.nodes.map((n) => n.identity!);
    expect(new Set(ids.map((i) => i.machineId)).size).toBe(3);
    expect(new Set(ids.map((i) => i.hostKeyFingerprint)).size).toBe(3);
    const d = driverFor(target);
    expect((await d.list({ platform }, {})).map((n) => [n.nodeId, n.running])).toEqual(status.nodes.map((n) => [n.nodeId, true]).sort());

    const qemus = (await host.processes()).filter((p) => p.argv[0]?.endsWith('qemu-system-x86_64'));
    expect(qemus).toHaveLength(3);
    for (const node of status.nodes) {
      const recorded = node.identity!;
      const consoleLog = readFileSync(path.join(nodesDir, node.nodeId, 'console.log'), 'utf8');
      // The guest's root is the shared image with the node's layer over it.
      expect(consoleLog).toContain('kubedos: overlay: root is an overlay of the image with /dev/vdb as its writable layer');
      // It read its identity from MMDS and applied it; the Foundry's host key is its only one.
      expect(consoleLog).toContain('kubedos: mmds: read meta-data and user-data');
      expect(consoleLog).toContain(`kubedos: nocloud: hostname ${node.hostname}`);
      expect(consoleLog).toContain(`kubedos: nocloud: machine-id ${recorded.machineId}`);
      expect(consoleLog.match(/kubedos: hostkey .*/g)).toEqual([expect.stringContaining(` ${recorded.hostKeyFingerprint} root@${node.hostname} (ED25519)`)]);
      expect(consoleLog).toContain(`kubedos: ready ${node.hostname}`);
      // Every QEMU opened the one prepared rootfs (through the jail's hard link) read-only.
      const jail = jailId('fc', node.nodeId);
      const qemu = qemus.find((q) => q.argv.some((a) => a.includes(`/${jail}/root/layer.ext4`)));
      expect(qemu?.argv.find((a) => a.includes('rootfs.ext4'))).toMatch(/readonly=on/);
      const root = host.local(path.join(host.chrootBase, 'firecracker', jail, 'root'));
      const shared = host.local(path.join(host.chrootBase, 'kubedos', 'fc', 'images', entries(host.local(path.join(host.chrootBase, 'kubedos', 'fc', 'images')))[0]!, 'rootfs.ext4'));
      expect(statSync(path.join(root, 'rootfs.ext4')).ino).toBe(statSync(shared).ino);
      const layer = statSync(path.join(root, 'layer.ext4'));
      console.log(`${node.nodeId}: writable layer after first boot: ${((layer.blocks * 512) / MiB).toFixed(1)} MiB allocated of ${layer.size / MiB} MiB; shared rootfs ${(statSync(shared).size / MiB).toFixed(0)} MiB`);
      expect(layer.blocks * 512).toBeLessThan(64 * MiB);
    }
  } finally {
    await handle.signal(teardownSignal).catch(() => undefined);
  }
  expect(await handle.result()).toEqual({ fleet: 'qa', destroyed: 3 });
  expect(await host.processes()).toEqual([]);
  expect(await host.taps()).toEqual([]);
  expect(entries(nodesDir)).toEqual([]);
  expect(entries(host.local(path.join(host.chrootBase, 'firecracker')))).toEqual([]);
});
