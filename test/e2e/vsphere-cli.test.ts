/**
 * `kubedos deploy examples/vsphere/kubedos.yaml` as a vCenter user runs it — the real CLI, the
 * embedded stack (control, build and vsphere pool worker processes), a real build of the
 * example's image (its OVA, signed and published to the local store, fetched and verified by the
 * vsphere worker) — pointed at vcsim by the environment the example reads (VSPHERE_URL,
 * VSPHERE_THUMBPRINT, VSPHERE_USERNAME, VSPHERE_PASSWORD), whose inventory the test shapes like
 * the example's vCenter (datacenter lab, cluster compute, pool kubedos, datastore shared-ds01).
 * vcsim runs no guest: THE TEST PLAYS THE GUESTS (ready key and address, as a booted image with
 * open-vm-tools reports them). Then durability: the vsphere worker process is killed with
 * SIGKILL while vCenter is cloning a node; the stack restarts it, the retried create adopts the
 * clone the dead worker started, and the fleet ends with exactly one VM per node.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FleetStatus } from '../../workflows/fleet-api';
import { cliEnv, kubedos, pidAlive, pinnedStackPorts, ROOT } from '../support/cli';
import { builtImage, sharedCaches } from '../support/images';
import { extraConfigOf, playGuests, startVcsim, VCSIM_PASSWORD, VCSIM_USER, type GuestPlayer, type Vcsim } from '../support/vcsim';

jest.setTimeout(40 * 60_000);

const EXAMPLE = path.join(ROOT, 'examples', 'vsphere', 'kubedos.yaml');
const FOLDER = '/lab/vm/kubedos/workers';

let home: string;
let specDir: string;
let env: NodeJS.ProcessEnv;
let vc: Vcsim;
let guests: GuestPlayer;

/** Shape vcsim's inventory like the example's vCenter: the names an administrator gave it. */
async function shapeLikeTheExample(sim: Vcsim): Promise<void> {
  await sim.govc(['object.rename', '/DC0', 'lab']);
  await sim.govc(['object.rename', '/lab/host/DC0_C0', 'compute']);
  await sim.govc(['pool.create', '/lab/host/compute/Resources/kubedos']);
  const dir = path.join(sim.dir, 'shared-ds01');
  mkdirSync(dir);
  await sim.govc(['datastore.create', '-type', 'local', '-mode', 'readWrite', '-name', 'shared-ds01', '-path', dir, '/lab/host/compute/DC0_C0_H0']);
}

async function status(): Promise<FleetStatus> {
  const r = await kubedos(['status', 'vsphere-lab/workers', '--json'], env);
  if (r.code !== 0) throw new Error(`status failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as FleetStatus;
}

async function waitFor<T>(what: string, ok: () => Promise<T | undefined>, timeoutMs = 180_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await ok().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(300);
  }
}

const ready = (s: FleetStatus) => s.nodes.filter((n) => n.state === 'ready').length;
const nodeVms = async () => (await vc.govc(['find', FOLDER, '-maxdepth', '1', '-type', 'm'])).split('\n').filter(Boolean).map((p) => path.basename(p)).filter((n) => !n.startsWith('kubedos-')).sort();
const stack = () => JSON.parse(readFileSync(path.join(home, 'stack.json'), 'utf8')) as { workers: Record<string, { pid: number }> };

beforeAll(async () => {
  // The rootfs layer and .deb caches the test run shares (the example adds open-vm-tools on top of the base).
  await builtImage();
  home = mkdtempSync(path.join(os.tmpdir(), 'kubedos-vsphere-cli-'));
  mkdirSync(path.join(home, 'cache'), { recursive: true });
  symlinkSync(sharedCaches().cacheDir, path.join(home, 'cache', 'build'));
  symlinkSync(sharedCaches().debCacheDir, path.join(home, 'cache', 'debs'));
  // The CLI writes kubedos.lock beside the spec: a copy of the example, byte for byte.
  specDir = mkdtempSync(path.join(os.tmpdir(), 'kubedos-vsphere-spec-'));
  copyFileSync(EXAMPLE, path.join(specDir, 'kubedos.yaml'));
  // Clones take 2 s in this vCenter, so a worker can be killed while one runs.
  vc = await startVcsim({ delays: { CloneVm: 2000 } });
  await shapeLikeTheExample(vc);
  env = cliEnv({
    KUBEDOS_HOME: home,
    KUBEDOS_POOLS: 'control,build,vsphere',
    TEMPORAL_ADDRESS: undefined,
    ...(await pinnedStackPorts()),
    VSPHERE_URL: vc.url,
    VSPHERE_THUMBPRINT: vc.thumbprint,
    VSPHERE_USERNAME: VCSIM_USER,
    VSPHERE_PASSWORD: VCSIM_PASSWORD,
  });
  guests = playGuests(vc, FOLDER);
});

afterAll(async () => {
  if (env) await kubedos(['down', specDir], env, 180_000).catch(() => undefined);
  if (env) await kubedos(['stack', 'stop'], env).catch(() => undefined);
  await guests?.stop();
  await vc?.stop();
  if (home) rmSync(home, { recursive: true, force: true });
  if (specDir) rmSync(specDir, { recursive: true, force: true });
});

test('kubedos deploy examples/vsphere: built, imported as a template, 3 linked clones healthy (the test plays the guests)', async () => {
  expect(readFileSync(path.join(specDir, 'kubedos.yaml'), 'utf8')).toBe(readFileSync(EXAMPLE, 'utf8'));
  const started = Date.now();
  const up = await kubedos(['deploy', specDir, '--json'], env, 30 * 60_000);
  console.log(`vsphere CLI: kubedos deploy examples/vsphere (build + import + 3 clones) in ${Math.round((Date.now() - started) / 1000)} s`);
  expect(up.stderr).not.toMatch(/Error/);
  expect(up.code).toBe(0);
  const fleet = (JSON.parse(up.stdout) as { fleets: (FleetStatus & { outcome: string })[] }).fleets[0]!;
  expect(fleet.outcome).toBe('ok');
  expect(ready(fleet)).toBe(3);
  expect(await nodeVms()).toEqual(fleet.nodes.map((n) => n.nodeId).sort());
  // One template, by digest, in the folder KubeDos made, and the nodes are clones of it in the pool.
  const templates = (await vc.govc(['find', FOLDER, '-maxdepth', '1', '-type', 'm', '-name', 'kubedos-image-*'])).split('\n').filter(Boolean);
  expect(templates).toHaveLength(1);
  expect(templates[0]).toMatch(/\/kubedos-image-[0-9a-f]{64}$/);
  const pool = await vc.govc(['find', '/lab/host/compute/Resources/kubedos', '-type', 'm']);
  for (const n of fleet.nodes) expect(pool).toContain(n.nodeId);
  // What each guest was given is what the fleet recorded.
  for (const n of fleet.nodes) {
    const vm = [...guests.played.values()].find((v) => v.name === n.nodeId)!;
    expect(vm.hostname).toBe(n.hostname);
    expect(vm.userData).toContain(`ed25519_public: '${n.identity!.hostKeyPublic}'`);
  }
  const text = await kubedos(['status', 'workers'], env);
  expect(text.stdout).toMatch(/fleet vsphere-lab\/workers on vc: steady/);
});

test('the vsphere worker killed with SIGKILL mid-clone: the retry adopts the clone, no VM is doubled', async () => {
  expect((await kubedos(['scale', 'workers', '5'], env)).code).toBe(0);
  // vCenter is cloning a node: its task runs, the VM does not exist yet.
  const before = await nodeVms();
  await waitFor('a clone in flight', async () => {
    const tasks = JSON.parse(await vc.govc(['tasks', '-json'])) as { tasks: Array<{ name: string; state: string }> };
    return tasks.tasks.some((t) => t.name === 'CloneVm' && t.state === 'running') ? true : undefined;
  }, 120_000);
  const victim = stack().workers.vsphere!.pid;
  process.kill(victim, 'SIGKILL');
  while (pidAlive(victim)) await sleep(50);
  expect(await nodeVms()).toEqual(before);
  // Any command restarts missing workers of the embedded stack.
  expect((await kubedos(['stack', 'start'], env)).code).toBe(0);
  expect(stack().workers.vsphere!.pid).not.toBe(victim);

  const done = await waitFor('5 ready', async () => {
    const s = await status();
    return s.phase === 'steady' && ready(s) === 5 ? s : undefined;
  }, 300_000).catch(async (err) => {
    // Say where it is stuck: the fleet's nodes and the vsphere worker's last words.
    const s = await status().catch((e: Error) => e.message);
    const log = (name: string) => readFileSync(path.join(home, 'logs', `worker-${name}.log`), 'utf8').split('\n').slice(-60).join('\n');
    throw new Error(`${(err as Error).message}\nstatus: ${JSON.stringify(s, null, 1)}\nVMs: ${(await nodeVms()).join(' ')}\nvsphere worker:\n${log('vsphere')}\ncontrol worker:\n${log('control')}`);
  });
  // No node failed on the way (a failed one would have been replaced by a sixth).
  expect(done.nodes.map((n) => [n.nodeId, n.state, n.attempts, n.error])).toEqual(done.nodes.map((n) => [n.nodeId, 'ready', 1, undefined]));
  expect(new Set(done.nodes.map((n) => n.nodeId)).size).toBe(5);
  expect(await nodeVms()).toEqual(done.nodes.map((n) => n.nodeId).sort());
  // Every node's VM carries the identity the fleet recorded for it (the adopted one included).
  for (const n of done.nodes) {
    const extra = extraConfigOf((await vc.props(`${FOLDER}/${n.nodeId}`, 'config.extraConfig'))['config.extraConfig']);
    expect(JSON.parse(extra['kubedos.identity']!)).toEqual(n.identity);
  }

  const gone = await kubedos(['down', specDir], env, 180_000);
  expect(gone.code).toBe(0);
  expect(gone.stdout).toMatch(/vsphere-lab\/workers: destroyed 5 node\(s\)/);
  expect(await nodeVms()).toEqual([]);
});
