/**
 * The Firecracker driver on two test hosts, each a network namespace of its own with a real sshd
 * (pinned host key, argv-quoted commands, verified uploads), a real bridge and the real taps the
 * driver makes there. What the hosts run at the configured firecracker and jailer paths is the
 * STAND-IN (test/support/firecracker-standin): the jailer's command line checked and its jail
 * built, Firecracker's API served on the jail's unix socket with request bodies validated against
 * Firecracker's OpenAPI description, reached by SSH stream-local forwarding. Here booting is
 * disabled: InstanceStart starts no guest, and the stand-in's emulated guest prints the readiness
 * line with the hostname it reads from MMDS (or panics, for a kernel so marked). The real boot
 * under QEMU -M microvm is test/e2e/firecracker-boot.test.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, promises as fs, statSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Worker } from '@temporalio/worker';
import { createDeployActivities, type TargetRef } from '../../activities/deploy';
import { FirecrackerApiError, FirecrackerBridgeMissingError, FirecrackerImageError, HostKeyMismatchError } from '../../src/errors';
import type { TargetOf } from '../../src/platform/types';
import { createDriver } from '../../src/targets';
import type { CreateNodeRequest, NodeLabels, PreparedImage } from '../../src/targets/driver';
import { FirecrackerApi } from '../../src/targets/firecracker/api';
import { FirecrackerDriver } from '../../src/targets/firecracker/driver';
import { jailId, tapName } from '../../src/targets/firecracker/names';
import { generateIdentity, publicPart } from '../../src/targets/identity';
import { deployUpdate, fleetWorkflowId, scaleUpdate, teardownSignal, type FleetInput } from '../../workflows/fleet-api';
import { readyCount } from '../support/fleet';
import { smallBundle, type BundleArtifact } from '../support/firecracker-bundle';
import { entries, sharedMount, startFirecrackerHost, waitForFleet, type FirecrackerTestHost } from '../support/firecracker-host';
import { connectTestEnv, testPoolWorker, type TestEnv } from '../support/temporal';

jest.setTimeout(5 * 60_000);

const ROOT = path.resolve(__dirname, '..', '..');
const MiB = 2 ** 20;
let tmp: string;
let mount: string;
let hosts: FirecrackerTestHost[] = [];
let bundles: Record<'a' | 'b' | 'panic' | 'old', BundleArtifact>;
const drivers: FirecrackerDriver[] = [];
const platform = `f${randomUUID().slice(0, 6)}`;
const KEYS = ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHfake kubedos-test'];

/** The target spec; every test host sees its own directory at the same paths, as separate machines do. */
function spec(overrides: Partial<TargetOf<'firecracker'>> = {}, on: FirecrackerTestHost[] = hosts): TargetOf<'firecracker'> {
  const h = on[0]!;
  return {
    type: 'firecracker',
    hosts: on.map((x) => x.connection()),
    firecracker: h.firecracker,
    jailer: h.jailer,
    chrootBase: h.chrootBase,
    uid: 10_000,
    gid: 10_000,
    cgroupVersion: 2,
    network: { bridge: h.bridge },
    limits: { cpuOversubscription: 4, memoryOversubscription: 1 },
    layerSize: 1024 * MiB,
    memory: 256 * MiB,
    cpus: 1,
    ...overrides,
  } as TargetOf<'firecracker'>;
}

/** A driver as a kvm worker makes one. */
function driver(s: TargetOf<'firecracker'> = spec(), name = 'fc'): FirecrackerDriver {
  const d = new FirecrackerDriver(name, s, { stateDir: path.join(tmp, 'local-state') }, { cgroupRoot: hosts[0]!.cgroupRoot });
  drivers.push(d);
  return d;
}

function labelsOf(fleet: string, overrides: Partial<NodeLabels> = {}): NodeLabels {
  return { platform, fleet, generation: 1, image: 'qa-worker', imageDigest: 'a'.repeat(64), ...overrides };
}

function request(nodeId: string, hostname: string, labels: NodeLabels, image: PreparedImage): CreateNodeRequest {
  return { nodeId, labels, image, identity: generateIdentity(hostname), authorizedKeys: KEYS };
}

async function waitUntil(what: string, ok: () => Promise<boolean> | boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** On this machine: a node's state directory and jail on host h. */
const nodeDir = (h: FirecrackerTestHost, nodeId: string, target = 'fc') => h.local(path.join(h.chrootBase, 'kubedos', target, 'nodes', nodeId));
const jailDir = (h: FirecrackerTestHost, nodeId: string, target = 'fc') => h.local(path.join(h.chrootBase, 'firecracker', jailId(target, nodeId)));
const imagesDir = (h: FirecrackerTestHost, target = 'fc') => h.local(path.join(h.chrootBase, 'kubedos', target, 'images'));
const firecrackers = async (h: FirecrackerTestHost) => (await h.processes()).filter((p) => p.argv.some((a) => a.startsWith('--id=')));
const callsOf = (h: FirecrackerTestHost, jail: string) => h.apiCalls().filter((c) => c.id === jail);

/** Nothing of any node left on a host: no process, tap, jail, cgroup, layer or state. */
async function expectEmpty(h: FirecrackerTestHost, target = 'fc'): Promise<void> {
  expect(await h.processes()).toEqual([]);
  expect(await h.taps()).toEqual([]);
  expect(entries(h.local(path.join(h.chrootBase, 'firecracker')))).toEqual([]);
  expect(entries(h.local(path.join(h.cgroupRoot, 'firecracker')))).toEqual([]);
  expect(entries(h.local(path.join(h.chrootBase, 'kubedos', target, 'nodes')))).toEqual([]);
  expect(entries(h.local(path.join(h.chrootBase, 'kubedos', target, 'nat')))).toEqual([]);
}

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-fc-'));
  mount = sharedMount();
  hosts = await Promise.all([startFirecrackerHost(mount, { emulateGuest: true, readyDelayMs: 300 }), startFirecrackerHost(mount, { emulateGuest: true, readyDelayMs: 300 })]);
  bundles = {
    a: await smallBundle(path.join(tmp, 'a'), 'qa-worker'),
    b: await smallBundle(path.join(tmp, 'b'), 'qa-worker'),
    panic: await smallBundle(path.join(tmp, 'panic'), 'qa-worker', { panic: true }),
    old: await smallBundle(path.join(tmp, 'old'), 'qa-worker', { overlayInit: false }),
  };
});

afterAll(async () => {
  for (const d of drivers) await d.close().catch(() => undefined);
  await Promise.all(hosts.map((h) => h.stop()));
  if (mount) await fs.rm(mount, { recursive: true, force: true });
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

describe('the stand-ins are strict (so their accepting the driver means something)', () => {
  test('the firecracker stand-in answers bad API calls as Firecracker does: 400 and a fault_message', async () => {
    const root = await fs.mkdtemp(path.join(tmp, 'api-'));
    await fs.mkdir(path.join(root, 'run'));
    const child = spawn(hosts[0]!.local(hosts[0]!.firecracker), ['--id=probe', '--start-time-us=0', '--api-sock', '/run/fc.sock'], { env: { KUBEDOS_FC_STANDIN_ROOT: root }, stdio: 'ignore' });
    try {
      await waitUntil('the API socket', () => existsSync(path.join(root, 'run', 'fc.sock')));
      const api = new FirecrackerApi(() => new Promise((resolve, reject) => {
        const s = net.connect(path.join(root, 'run', 'fc.sock'));
        s.once('connect', () => resolve(s));
        s.once('error', reject);
      }), { target: 'probe', nodeId: 'probe' });
      const refusals: Array<[string, unknown, RegExp]> = [
        ['/machine-config', { vcpu_count: 1, mem_size_mib: 256, colour: 'blue' }, /unknown field `colour`, expected one of/],
        ['/machine-config', { vcpu_count: 33, mem_size_mib: 256 }, /out of range for `vcpu_count`/],
        ['/machine-config', { vcpu_count: '1', mem_size_mib: 256 }, /invalid type: string "1", expected an integer/],
        ['/machine-config', { vcpu_count: 1 }, /missing field `mem_size_mib`/],
        ['/boot-source', { kernel_image_path: '/vmlinux' }, /The kernel file cannot be opened: No such file or directory/],
        ['/boot-source', { kernel_image_path: '../../../etc/hostname' }, /The kernel file cannot be opened/], // nothing outside the jail
        ['/drives/rootfs', { drive_id: 'other', path_on_host: '/x', is_root_device: true }, /does not match the id from the body/],
        ['/drives/rootfs', { drive_id: 'rootfs', path_on_host: '/x', is_root_device: 'yes' }, /expected a boolean/],
        ['/network-interfaces/eth0', { iface_id: 'eth0', host_dev_name: 'tap0', guest_mac: 'not-a-mac' }, /invalid value "not-a-mac" for `guest_mac`/],
        ['/mmds/config', { version: 'V3', network_interfaces: ['eth0'] }, /unknown variant `V3`/],
        ['/mmds/config', { version: 'V2', network_interfaces: ['eth0'] }, /does not correspond to any existing network interface/],
        ['/mmds/config', { version: 'V2', network_interfaces: ['eth0'], ipv4_address: '10.0.0.1' }, /invalid value "10.0.0.1" for `ipv4_address`/],
        ['/actions', { action_type: 'Reboot' }, /unknown variant `Reboot`/],
        ['/actions', { action_type: 'InstanceStart' }, /Cannot start microvm without kernel configuration/],
        ['/actions', { action_type: 'SendCtrlAltDel' }, /not supported before starting the microVM/],
        ['/shutdown', {}, /Invalid request method and\/or path: PUT \/shutdown/],
      ];
      for (const [where, body, fault] of refusals) {
        const err = await api.call('PUT', where, body).catch((e: unknown) => e);
        expect([where, err]).toEqual([where, expect.objectContaining({ name: 'FirecrackerApiError', status: 400, faultMessage: expect.stringMatching(fault) })]);
      }
      expect(await api.call('GET', '/')).toEqual({ app_name: 'Firecracker', id: 'probe', state: 'Not started', vmm_version: expect.any(String) });
      api.close();
    } finally {
      child.kill('SIGKILL');
    }
  });

  test('the jailer stand-in refuses what the jailer refuses', async () => {
    const jailer = hosts[0]!.local(hosts[0]!.jailer);
    const fc = hosts[0]!.local(hosts[0]!.firecracker);
    const base = ['--exec-file', fc, '--uid', '10000', '--gid', '10000', '--chroot-base-dir', path.join(tmp, 'jails')];
    const cases: Array<[string[], RegExp]> = [
      [['--id', 'bad_id!', ...base], /Invalid instance ID/],
      [['--id', 'ok', ...base, '--colour', 'blue'], /Found argument '--colour' which wasn't expected/],
      [['--id', 'ok', '--exec-file', '/bin/true', '--uid', '1', '--gid', '1'], /must contain "firecracker"/],
      [['--id', 'ok', ...base, '--cgroup', 'cpu.max'], /Invalid format for cgroups/],
      [['--id', 'ok', ...base, '--cgroup-version', '2', '--cgroup', 'blkio.weight=10'], /Controller blkio is unavailable in cgroup v2/],
      [['--id', 'ok', '--exec-file', fc, '--uid', 'root', '--gid', '1'], /Invalid uid/],
      [['--id', 'ok', ...base.slice(0, 4)], /Missing mandatory argument: --gid/],
    ];
    for (const [argv, message] of cases) {
      const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const c = spawn(jailer, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
        let stderr = '';
        c.stderr.on('data', (d) => (stderr += d));
        c.on('close', (code) => resolve({ code, stderr }));
      });
      expect([argv.join(' '), r.code, r.stderr]).toEqual([argv.join(' '), 1, expect.stringMatching(message)]);
    }
    expect(existsSync(path.join(tmp, 'jails'))).toBe(false);
  });
});

describe('the driver on two hosts over SSH (stand-in firecracker and jailer, booting disabled)', () => {
  let prepared: PreparedImage;
  const ids = [1, 2, 3].map((n) => `${platform}-qa-000${n}`);

  test('the registry builds the firecracker driver from a spec', async () => {
    const d = await createDriver('fc', spec());
    expect(d).toBeInstanceOf(FirecrackerDriver);
    await d.close?.();
  });

  test('a bundle built without the overlay init is refused before any node is made', async () => {
    await expect(driver().prepare({ name: 'qa-worker', digest: 'o'.repeat(64), artifact: bundles.old }, {})).rejects.toBeInstanceOf(FirecrackerImageError);
    for (const h of hosts) expect(entries(imagesDir(h))).toEqual([]);
  });

  test('prepare puts the bundle on every host once per digest, verified and read-only', async () => {
    const d = driver();
    const started = Date.now();
    prepared = await d.prepare({ name: 'qa-worker', digest: 'a'.repeat(64), artifact: bundles.a }, {});
    console.log(`prepare (4 files, 2 hosts over SSH): ${Date.now() - started} ms`);
    expect(prepared.location).toBe(bundles.a.sha256);
    for (const h of hosts) {
      const dir = path.join(imagesDir(h), prepared.location);
      expect(entries(dir)).toEqual(['config.json', 'initrd', 'rootfs.ext4', 'vmlinux']);
      for (const [name, file] of Object.entries({ 'config.json': 0, vmlinux: 1, initrd: 2, 'rootfs.ext4': 3 })) {
        const f = bundles.a.files![file]!;
        expect([name, createHash('sha256').update(await fs.readFile(path.join(dir, name))).digest('hex')]).toEqual([name, f.sha256]);
        expect(statSync(path.join(dir, name)).mode & 0o777).toBe(0o444);
      }
    }
    const mtime = statSync(path.join(imagesDir(hosts[1]!), prepared.location, 'rootfs.ext4')).mtimeMs;
    expect(await d.prepare({ name: 'qa-worker', digest: 'a'.repeat(64), artifact: bundles.a }, {})).toEqual(prepared);
    expect(statSync(path.join(imagesDir(hosts[1]!), prepared.location, 'rootfs.ext4')).mtimeMs).toBe(mtime);
  });

  test('create spreads nodes least loaded first, in O(1) of the image: hard links to the shared read-only image and a sparse layer', async () => {
    const d = driver();
    const requests = ids.map((id, i) => request(id, `qa-${i + 1}`, labelsOf('qa'), prepared));
    const timings: number[] = [];
    const identities = [];
    for (const r of requests) {
      const t = Date.now();
      identities.push(await d.create(r, {}));
      timings.push(Date.now() - t);
    }
    console.log(`create (jail: links + 1 GiB sparse ext4 layer, over SSH): ${timings.join(', ')} ms`);
    identities.forEach((identity, i) => expect(identity).toEqual(publicPart(requests[i]!.identity)));
    // Least loaded first: host 0, host 1, then host 0 again (ties go to the spec's order).
    expect(await Promise.all(ids.map((id) => d.hostOf(id)))).toEqual([hosts[0]!, hosts[1]!, hosts[0]!].map((h) => `root@${h.sshd.host}:${h.sshd.port}`));
    for (const [i, id] of ids.entries()) {
      const h = hosts[i === 1 ? 1 : 0]!;
      const root = path.join(jailDir(h, id), 'root');
      const images = path.join(imagesDir(h), prepared.location);
      for (const f of ['vmlinux', 'initrd', 'rootfs.ext4']) expect(statSync(path.join(root, f)).ino).toBe(statSync(path.join(images, f)).ino); // the same inode: nothing copied
      const layer = statSync(path.join(root, 'layer.ext4'));
      expect([layer.uid, layer.gid, layer.mode & 0o777, layer.size]).toEqual([10_000, 10_000, 0o600, 1024 * MiB]);
      expect(layer.blocks * 512).toBeLessThan(4 * MiB); // ext4 metadata only
      if (i === 0) console.log(`writable layer: ${layer.size / MiB} MiB apparent, ${(layer.blocks * 512) / 1024} KiB allocated`);
      expect(statSync(path.join(nodeDir(h, id), 'mmds.json')).mode & 0o777).toBe(0o600);
      const record = JSON.parse(await fs.readFile(path.join(nodeDir(h, id), 'node.json'), 'utf8'));
      expect(record).toMatchObject({ kubedos: 1, nodeId: id, labels: labelsOf('qa'), identity: identities[i], jailId: jailId('fc', id), tap: tapName('fc', id) });
      expect(JSON.stringify(record)).not.toContain('PRIVATE KEY');
    }
    // A retried create (a fresh identity from the retried activity) keeps the node and its identity.
    expect(await driver().create(request(ids[0]!, 'qa-1', labelsOf('qa'), prepared), {})).toEqual(identities[0]);
    await expect(d.create(request(ids[0]!, 'qa-1', labelsOf('qa', { imageDigest: 'b'.repeat(64) }), prepared), {})).rejects.toThrow(/exists on fc .* with another image/);
    expect(entries(path.dirname(nodeDir(hosts[0]!, ids[0]!)))).toEqual([ids[0], ids[2]].sort());
  });

  test('start configures each microVM through the API on its socket (all accepted), on a tap of the bridge, with cgroup limits; readiness comes from the console', async () => {
    const d = driver();
    const started = Date.now();
    await Promise.all(ids.map((id) => d.start(id, {})));
    console.log(`start of 3 in parallel (tap, jailer, 9 API calls each): ${Date.now() - started} ms`);
    for (const [i, id] of ids.entries()) {
      const h = hosts[i === 1 ? 1 : 0]!;
      const jail = jailId('fc', id);
      const calls = callsOf(h, jail);
      expect(calls.map((c) => `${c.method} ${c.path} ${c.status}`)).toEqual([
        'GET / 200', 'PUT /machine-config 204', 'PUT /boot-source 204', 'PUT /drives/rootfs 204', 'PUT /drives/layer 204',
        'PUT /network-interfaces/eth0 204', 'PUT /mmds/config 204', 'PUT /mmds 204', 'PUT /actions 204',
      ]);
      const body = (p: string) => calls.find((c) => c.path === p)!.body as Record<string, unknown>;
      expect(body('/machine-config')).toEqual({ vcpu_count: 1, mem_size_mib: 256, smt: false });
      expect(body('/boot-source')).toMatchObject({ kernel_image_path: '/vmlinux', initrd_path: '/initrd', boot_args: expect.stringMatching(/kubedos\.metadata=mmds init=\/usr\/lib\/kubedos\/overlay-init kubedos\.overlay=vdb$/) });
      expect(body('/drives/rootfs')).toEqual({ drive_id: 'rootfs', path_on_host: '/rootfs.ext4', is_root_device: true, is_read_only: true });
      expect(body('/network-interfaces/eth0')).toMatchObject({ iface_id: 'eth0', host_dev_name: tapName('fc', id) });
      // The tap exists on that host's bridge, owned by the jailed user.
      expect(await h.exec(['ip', '-d', 'link', 'show', tapName('fc', id)])).toMatch(/master kfbr0[\s\S]*tun type tap .*user 10000 group 10000/);
      // The jailer put the microVM's limits in its cgroup: one CPU, the guest's memory plus the VMM's.
      const cgroup = h.local(path.join(h.cgroupRoot, 'firecracker', jail));
      expect((await fs.readFile(path.join(cgroup, 'cpu.max'), 'utf8')).trim()).toBe('100000 100000');
      expect(Number(await fs.readFile(path.join(cgroup, 'memory.max'), 'utf8'))).toBe(256 * MiB + 128 * MiB);
    }
    for (const h of hosts) expect((await firecrackers(h)).map((p) => p.argv[0])).toEqual(expect.arrayContaining(['./firecracker']));
    await waitUntil('readiness of all three', async () => (await Promise.all(ids.map((id) => d.readiness(id)))).every(Boolean));
    // The emulated guest printed the hostname it read from MMDS: the document reached the VMM.
    expect(await fs.readFile(path.join(nodeDir(hosts[1]!, ids[1]!), 'console.log'), 'utf8')).toContain('kubedos: ready qa-2');
    // A repeated start (a retried activity) leaves the running microVM alone.
    await d.start(ids[0]!, {});
    expect(callsOf(hosts[0]!, jailId('fc', ids[0]!)).filter((c) => c.path === '/actions')).toHaveLength(1);
    expect(await firecrackers(hosts[0]!)).toHaveLength(2);
  });

  test('a fresh driver (a worker restart) finds every microVM from the state files on the hosts', async () => {
    const fresh = driver();
    const found = await fresh.list({ platform }, {});
    expect(found.map((n) => [n.nodeId, n.running, n.labels.fleet, n.identity?.hostname])).toEqual(ids.map((id, i) => [id, true, 'qa', `qa-${i + 1}`]));
    expect(await fresh.list({ platform, fleet: 'other' }, {})).toEqual([]);
    expect(await fresh.readiness(ids[2]!)).toBe(true);
    await expect(fresh.address(ids[0]!)).rejects.toThrow(/on a bridge/);
  });

  test('an API error (a missing kernel in the jail) is a clear, non-retryable failure', async () => {
    const d = driver();
    const id = `${platform}-bad-0001`;
    await d.create(request(id, 'bad-1', labelsOf('bad'), prepared), {});
    const h = hosts[1]!; // the less loaded host
    expect(await d.hostOf(id)).toBe(`root@${h.sshd.host}:${h.sshd.port}`);
    await fs.rm(path.join(jailDir(h, id), 'root', 'vmlinux'));
    const err = (await d.start(id, {}).catch((e: unknown) => e)) as FirecrackerApiError;
    expect(err).toBeInstanceOf(FirecrackerApiError);
    expect(err).toMatchObject({ status: 400, method: 'PUT', path: '/boot-source', retryable: false, faultMessage: expect.stringMatching(/^The kernel file cannot be opened: No such file or directory/) });
    expect(err.message).toMatch(new RegExp(`Firecracker refused PUT /boot-source for node ${id} \\(HTTP 400\\): The kernel file cannot be opened`));
    expect(err.hint).toMatch(/missing or unreadable in its jail/);
    await d.destroy(id, {});
    expect(await h.taps()).toEqual([tapName('fc', ids[1]!)]);
  });

  test('destroy: SendCtrlAltDel, then kill; no process, tap, jail, cgroup, layer or state is left', async () => {
    const d = driver();
    const started = Date.now();
    await Promise.all(ids.map((id) => d.destroy(id, {})));
    console.log(`destroy of 3 in parallel: ${Date.now() - started} ms`);
    for (const [i, id] of ids.entries()) {
      const h = hosts[i === 1 ? 1 : 0]!;
      expect(callsOf(h, jailId('fc', id)).filter((c) => c.path === '/actions').map((c) => (c.body as { action_type: string }).action_type)).toEqual(['InstanceStart', 'SendCtrlAltDel']);
    }
    for (const h of hosts) await expectEmpty(h);
    expect(await d.list({}, {})).toEqual([]);
    await d.destroy(ids[0]!, {}); // absent is fine
    // What stays is the prepared image, once per digest.
    for (const h of hosts) expect(entries(imagesDir(h))).toEqual([prepared.location]);
  });

  test('a missing bridge and a wrong host key are refused, clearly', async () => {
    const d = driver(spec({ network: { bridge: 'kfnobridge' } }));
    const id = `${platform}-nobr-0001`;
    await d.create(request(id, 'nobr-1', labelsOf('nobr'), prepared), {});
    await expect(d.start(id, {})).rejects.toBeInstanceOf(FirecrackerBridgeMissingError);
    await d.destroy(id, {});
    const impostor = driver(spec({ hosts: [{ ...hosts[0]!.connection(), hostKey: generateIdentity('impostor').hostKeyPublic }] }));
    await expect(impostor.list({}, {})).rejects.toBeInstanceOf(HostKeyMismatchError);
    for (const h of hosts) await expectEmpty(h);
  });

  test('NAT: each microVM has its own /30 of the subnet, masqueraded by an nftables table of the target; the subnet bounds the host', async () => {
    const h = hosts[0]!;
    const s = spec({ network: { nat: { subnet: '172.30.8.0/29' } } }, [h]); // two /30s
    const d = driver(s, 'fcnat');
    const image = await d.prepare({ name: 'qa-worker', digest: 'a'.repeat(64), artifact: bundles.a }, {});
    const nat = [1, 2].map((n) => `${platform}-nat-000${n}`);
    for (const [i, id] of nat.entries()) await d.create(request(id, `nat-${i + 1}`, labelsOf('nat'), image), {});
    await expect(d.create(request(`${platform}-nat-0003`, 'nat-3', labelsOf('nat'), image), {})).rejects.toThrow(/every host is full/);
    await Promise.all(nat.map((id) => d.start(id, {})));
    expect(await d.address(nat[0]!)).toEqual({ host: '172.30.8.2', ports: { 22: 22 } });
    expect(await d.address(nat[1]!)).toEqual({ host: '172.30.8.6', ports: { 22: 22 } });
    expect(await h.exec(['ip', '-4', '-o', 'addr', 'show', 'dev', tapName('fcnat', nat[1]!)])).toContain('inet 172.30.8.5/30');
    const boot = (callsOf(h, jailId('fcnat', nat[1]!)).find((c) => c.path === '/boot-source')!.body as { boot_args: string }).boot_args;
    expect(boot).toMatch(/ ip=172\.30\.8\.6::172\.30\.8\.5:255\.255\.255\.252::eth0:off$/);
    const ruleset = await h.exec(['nft', 'list', 'ruleset']);
    expect(ruleset).toMatch(/table ip kubedos_[0-9a-f]{12} \{[\s\S]*type nat hook postrouting priority srcnat; policy accept;[\s\S]*ip saddr 172\.30\.8\.0\/29 ip daddr != 172\.30\.8\.0\/29 masquerade/);
    expect((await h.exec(['cat', '/proc/sys/net/ipv4/ip_forward'])).trim()).toBe('1');
    await d.destroy(nat[0]!, {});
    // The freed /30 is the next node's.
    await d.create(request(`${platform}-nat-0003`, 'nat-3', labelsOf('nat'), image), {});
    expect(JSON.parse(await fs.readFile(path.join(nodeDir(h, `${platform}-nat-0003`, 'fcnat'), 'node.json'), 'utf8')).nat).toEqual({ index: 0, host: '172.30.8.1', guest: '172.30.8.2' });
    await Promise.all([nat[1]!, `${platform}-nat-0003`].map((id) => d.destroy(id, {})));
    await expectEmpty(h, 'fcnat');
  });
});

describe('through the fleet workflow (dev server; deploy activities on a kvm worker)', () => {
  let env: TestEnv;
  const workers: Worker[] = [];
  const running: Promise<void>[] = [];
  const children: ChildProcess[] = [];
  const fetchArtifact = async (image: { digest: string }) => {
    const found = { ['a'.repeat(64)]: bundles.a, ['b'.repeat(64)]: bundles.b, ['c'.repeat(64)]: bundles.panic }[image.digest];
    if (!found) throw new Error(`no bundle for ${image.digest}`);
    return found;
  };

  beforeAll(async () => {
    env = await connectTestEnv();
  });

  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    for (const w of workers) w.shutdown();
    await Promise.allSettled(running);
    await env?.close();
  });

  async function queues(id: string, kvm: boolean): Promise<{ kvmQueue: string; controlQueue: string }> {
    const kvmQueue = `t-${id}-kvm`;
    const controlQueue = `t-${id}-control`;
    const deploy = createDeployActivities({ driverFor: (t: TargetRef) => driver(t.spec as TargetOf<'firecracker'>, t.name), fetchArtifact });
    const made = [await testPoolWorker(env, 'control', controlQueue), ...(kvm ? [await testPoolWorker(env, 'kvm', kvmQueue, deploy as never)] : [])];
    workers.push(...made);
    running.push(...made.map((w) => w.run()));
    return { kvmQueue, controlQueue };
  }

  function input(fleetPlatform: string, kvmQueue: string, replicas: number, overrides: Partial<FleetInput> = {}): FleetInput {
    return {
      platform: fleetPlatform,
      fleet: 'qa',
      target: { name: 'fc', spec: spec() },
      deployQueue: kvmQueue,
      artifactFormat: 'firecracker',
      hostnamePrefix: 'qa',
      authorizedKeys: KEYS,
      healthCheck: { type: 'readiness', timeout: 60_000, interval: 200, retries: 0 },
      rollout: { maxSurge: 1, maxUnavailable: 0, failureThreshold: 1, batchSize: 10 },
      image: { name: 'qa-worker', digest: 'a'.repeat(64) },
      replicas,
      ...overrides,
    };
  }

  test('two hosts share a fleet: 3 microVMs, scaled to 6 and back to 2, a rollout, a rollback; teardown leaves nothing', async () => {
    const id = randomUUID().slice(0, 8);
    const fleetPlatform = `f${id}`;
    const { kvmQueue, controlQueue } = await queues(id, true);
    const d = driver();
    const handle = await env.client.workflow.start('fleet', { taskQueue: controlQueue, workflowId: fleetWorkflowId(fleetPlatform, 'qa'), args: [input(fleetPlatform, kvmQueue, 3)] });
    const perHost = async () => {
      const owned = await d.list({ platform: fleetPlatform }, {});
      const where = await Promise.all(owned.map((n) => d.hostOf(n.nodeId)));
      return hosts.map((h) => where.filter((w) => w === `root@${h.sshd.host}:${h.sshd.port}`).length);
    };
    try {
      let t = Date.now();
      let status = await waitForFleet(handle, (s) => s.phase === 'steady' && readyCount(s) === 3, 120_000);
      console.log(`fleet of 3 (stand-in, no boot): deploy → ready in ${Date.now() - t} ms`);
      expect(new Set(status.nodes.map((n) => n.identity!.hostKeyFingerprint)).size).toBe(3);
      expect((await perHost()).sort()).toEqual([1, 2]);

      t = Date.now();
      expect(await handle.executeUpdate(scaleUpdate, { args: [6] })).toBe(6);
      status = await waitForFleet(handle, (s) => s.phase === 'steady' && readyCount(s) === 6, 120_000);
      console.log(`scale 3 → 6: ${Date.now() - t} ms`);
      expect(await perHost()).toEqual([3, 3]);
      for (const h of hosts) expect(await firecrackers(h)).toHaveLength(3);

      await handle.executeUpdate(scaleUpdate, { args: [2] });
      status = await waitForFleet(handle, (s) => s.phase === 'steady' && s.nodes.length === 2 && readyCount(s) === 2, 120_000);
      const owned = await d.list({ platform: fleetPlatform }, {});
      expect(owned.map((n) => n.nodeId).sort()).toEqual(status.nodes.map((n) => n.nodeId).sort());
      expect((await Promise.all(hosts.map(firecrackers))).flat()).toHaveLength(2);
      expect((await Promise.all(hosts.map((h) => h.taps()))).flat()).toHaveLength(2);

      // A rollout to image B replaces both nodes; one to a kernel that panics is rolled back.
      expect(await handle.executeUpdate(deployUpdate, { args: [{ image: { name: 'qa-worker', digest: 'b'.repeat(64) } }] })).toEqual({ generation: 2, unchanged: false });
      status = await waitForFleet(handle, (s) => s.phase === 'steady' && s.rollouts.length === 2 && readyCount(s) === 2, 120_000);
      expect(status.rollouts.map((r) => r.outcome)).toEqual(['completed', 'completed']); // the first deploy, then B
      expect((await d.list({ platform: fleetPlatform }, {})).map((n) => [n.labels.generation, n.labels.imageDigest])).toEqual([[2, 'b'.repeat(64)], [2, 'b'.repeat(64)]]);
      await handle.executeUpdate(deployUpdate, { args: [{ image: { name: 'qa-worker', digest: 'c'.repeat(64) } }] });
      status = await waitForFleet(handle, (s) => s.rollouts.length === 3 && s.phase !== 'rolling-out', 120_000);
      expect(status.rollouts[2]!.outcome).toBe('rolled-back');
      expect(status.rollouts[2]!.error).toMatch(/stopped running before it reported ready[\s\S]*Kernel panic/);
      await waitForFleet(handle, (s) => s.phase === 'steady' && readyCount(s) === 2, 60_000);
      const after = await d.list({ platform: fleetPlatform }, {});
      expect(after.map((n) => [n.labels.generation, n.running])).toEqual([[2, true], [2, true]]);
      expect((await Promise.all(hosts.map(firecrackers))).flat()).toHaveLength(2);
    } finally {
      await handle.signal(teardownSignal).catch(() => undefined);
    }
    expect(await handle.result()).toMatchObject({ fleet: 'qa' });
    expect(await d.list({ platform: fleetPlatform }, {})).toEqual([]);
    for (const h of hosts) await expectEmpty(h);
  });

  test('a kvm worker killed mid-launch: another one resumes, no microVM is doubled', async () => {
    const id = randomUUID().slice(0, 8);
    const fleetPlatform = `k${id}`;
    const { kvmQueue, controlQueue } = await queues(id, false);
    // Slow API answers (on both hosts' stand-ins) make a launch last long enough to be interrupted.
    for (const h of hosts) {
      const file = h.local(`${h.jailer}.standin.json`);
      await fs.writeFile(file, JSON.stringify({ ...JSON.parse(await fs.readFile(file, 'utf8')), apiDelayMs: 400 }));
    }
    const config = path.join(tmp, `worker-${id}.json`);
    await fs.writeFile(config, JSON.stringify({ address: process.env.KUBEDOS_TEST_TEMPORAL_ADDRESS, queue: kvmQueue, stateDir: path.join(tmp, 'w'), cgroupRoot: hosts[0]!.cgroupRoot, bundles: { ['a'.repeat(64)]: bundles.a } }));
    const startWorker = async (): Promise<ChildProcess> => {
      const child = spawn(process.execPath, [path.join(ROOT, 'node_modules', 'ts-node', 'dist', 'bin.js'), '--transpile-only', '--project', path.join(ROOT, 'tsconfig.json'), path.join(ROOT, 'test', 'support', 'firecracker-kvm-worker.ts'), config], { stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(child);
      let out = '';
      child.stdout!.on('data', (c) => (out += c));
      child.stderr!.on('data', (c) => (out += c));
      await waitUntil('the kvm worker to poll', () => out.includes('worker ready') || child.exitCode !== null, 60_000);
      if (child.exitCode !== null) throw new Error(`the kvm worker exited: ${out}`);
      return child;
    };
    const d = driver();
    const handle = await env.client.workflow.start('fleet', { taskQueue: controlQueue, workflowId: fleetWorkflowId(fleetPlatform, 'qa'), args: [input(fleetPlatform, kvmQueue, 2)] });
    try {
      const first = await startWorker();
      // Mid-launch: a firecracker runs and is being configured, InstanceStart not yet sent.
      await waitUntil('a launch in progress', () => hosts.some((h) => h.apiCalls().some((c) => c.path === '/machine-config' && c.id.startsWith(`${fleetPlatform}-qa`))), 120_000);
      first.kill('SIGKILL');
      const killedAt = Date.now();
      const interrupted = hosts.flatMap((h) => h.apiCalls()).filter((c) => c.id.startsWith(`${fleetPlatform}-qa`) && c.path === '/actions').length;
      await startWorker();
      const status = await waitForFleet(handle, (s) => s.phase === 'steady' && readyCount(s) === 2, 180_000);
      console.log(`killed kvm worker mid-launch (${interrupted} InstanceStart sent before the kill): resumed and ready ${Date.now() - killedAt} ms after the kill`);
      const owned = await d.list({ platform: fleetPlatform }, {});
      expect(owned.map((n) => n.nodeId).sort()).toEqual(status.nodes.map((n) => n.nodeId).sort());
      // One firecracker per node, and each was started once.
      const procs = (await Promise.all(hosts.map(firecrackers))).flat().filter((p) => p.argv.some((a) => a.startsWith(`--id=${fleetPlatform}-qa`)));
      expect(procs).toHaveLength(2);
      const calls = hosts.flatMap((h) => h.apiCalls()).filter((c) => c.id.startsWith(`${fleetPlatform}-qa`));
      for (const n of owned) {
        const mine = calls.filter((c) => c.id === jailId('fc', n.nodeId));
        expect(mine.filter((c) => c.path === '/actions' && c.status === 204)).toHaveLength(1);
      }
      // At least one launch was resumed: its configuration was sent again to the same firecracker.
      expect(owned.some((n) => calls.filter((c) => c.id === jailId('fc', n.nodeId) && c.path === '/machine-config').length > 1)).toBe(true);
    } finally {
      for (const h of hosts) {
        const file = h.local(`${h.jailer}.standin.json`);
        await fs.writeFile(file, JSON.stringify({ ...JSON.parse(await fs.readFile(file, 'utf8')), apiDelayMs: 0 }));
      }
      await handle.signal(teardownSignal).catch(() => undefined);
    }
    await handle.result();
    for (const h of hosts) await expectEmpty(h);
  });
});
