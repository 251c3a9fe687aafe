/**
 * Fleets through the real CLI and the embedded stack, on hollow nodes: deploy, status, scale,
 * pause/resume, abort, down — and durability: the control worker killed with SIGKILL in the
 * middle of provisioning, and the dev server killed mid-run; the stack's supervisor restarts
 * each by itself (no command is run), and both runs complete with nothing doubled.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { cliEnv, kubedos, pidAlive, pinnedStackPorts } from '../support/cli';
import type { FleetStatus } from '../../workflows/fleet-api';

let home: string;
let specFile: string;
let env: NodeJS.ProcessEnv;

function spec(replicas: number, bootDelay: string, extra = ''): string {
  return `apiVersion: kubedos.dev/v1alpha1
kind: Platform
metadata:
  name: cli
base:
  sourceDateEpoch: 1735689600
images:
  worker:
    disk:
      size: 2GiB
    outputs: [qcow2]
targets:
  sim:
    type: hollow
    bootDelay: ${bootDelay}
${extra}
fleets:
  herd:
    image: worker
    target: sim
    replicas: ${replicas}
    rollout:
      batchSize: 4
    healthCheck:
      type: readiness
      interval: 200ms
      timeout: 2m
`;
}

beforeAll(async () => {
  home = mkdtempSync(path.join(os.tmpdir(), 'kubedos-fleet-home-'));
  specFile = path.join(home, 'kubedos.yaml');
  writeFileSync(specFile, spec(3, '0s'));
  // The dev server is killed and restarted below: its ports must still be its own then.
  env = cliEnv({ KUBEDOS_HOME: home, KUBEDOS_POOLS: 'control', TEMPORAL_ADDRESS: undefined, ...(await pinnedStackPorts()) });
});

afterAll(async () => {
  await kubedos(['down', specFile], env, 120_000).catch(() => undefined);
  await kubedos(['stack', 'stop'], env).catch(() => undefined);
  rmSync(home, { recursive: true, force: true });
});

async function status(): Promise<FleetStatus & { rollout?: unknown }> {
  const r = await kubedos(['status', 'cli/herd', '--json'], env);
  if (r.code !== 0) throw new Error(`status failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

async function waitFor(ok: (s: FleetStatus) => boolean, timeoutMs = 120_000): Promise<FleetStatus> {
  const deadline = Date.now() + timeoutMs;
  let last: FleetStatus | undefined;
  while (Date.now() < deadline) {
    last = await status().catch(() => undefined);
    if (last && ok(last)) return last;
    await sleep(500);
  }
  throw new Error(`fleet never got there; last: ${JSON.stringify(last && { ...last, nodes: last.nodes.map((n) => `${n.nodeId}:${n.state}`) })}`);
}

const ready = (s: FleetStatus) => s.nodes.filter((n) => n.state === 'ready').length;
const nodeDirs = () => readdirSync(path.join(home, 'targets', 'sim', 'nodes')).sort();
const stack = () =>
  JSON.parse(readFileSync(path.join(home, 'stack.json'), 'utf8')) as { server: { pid: number; state: string }; workers: { control: { pid: number; restarts?: number } } };
const runningNodePids = () =>
  nodeDirs()
    .map((d) => Number(readFileSync(path.join(home, 'targets', 'sim', 'nodes', d, 'pid'), 'utf8')))
    .filter((pid) => pidAlive(pid));

test('deploy, status, scale, pause/resume, abort through the CLI', async () => {
  const up = await kubedos(['deploy', specFile, '--json'], env, 300_000);
  expect(up.stderr).not.toMatch(/Error/);
  expect(up.code).toBe(0);
  const result = JSON.parse(up.stdout) as { fleets: (FleetStatus & { outcome: string })[] };
  expect(result.fleets[0]!.outcome).toBe('ok');
  expect(ready(result.fleets[0]!)).toBe(3);
  expect(nodeDirs()).toEqual(['cli-herd-0000', 'cli-herd-0001', 'cli-herd-0002']);

  const text = await kubedos(['status', 'herd'], env);
  expect(text.stdout).toMatch(/fleet cli\/herd on sim: steady/);
  expect(text.stdout).toMatch(/cli-herd-0002 +worker-0002 +1 +ready/);

  const bad = await kubedos(['scale', 'herd', '-3'], env);
  expect(bad.code).not.toBe(0);
  const absurd = await kubedos(['scale', 'herd', '999999'], env);
  expect(absurd.code).toBe(2);
  expect(absurd.stderr).toMatch(/replicas must be a whole number from 0 to 10000/);

  expect((await kubedos(['scale', 'herd', '5'], env)).code).toBe(0);
  await waitFor((s) => s.phase === 'steady' && ready(s) === 5);

  // Pause, then a redeploy of a changed image waits until resume.
  expect((await kubedos(['pause', 'cli/herd'], env)).code).toBe(0);
  writeFileSync(specFile, spec(5, '0s').replace('outputs: [qcow2]', 'outputs: [qcow2]\n    hostnamePrefix: node'));
  const noWait = await kubedos(['deploy', specFile, '--no-wait'], env);
  expect(noWait.code).toBe(0);
  await sleep(1500);
  expect((await status()).generation).toBe(1);
  expect((await kubedos(['resume', 'cli/herd'], env)).code).toBe(0);
  const g2 = await waitFor((s) => s.phase === 'steady' && s.generation === 2 && ready(s) === 5);
  expect(g2.nodes.every((n) => n.hostname.startsWith('node-'))).toBe(true);
  expect(nodeDirs()).toHaveLength(5);

  // Abort a slow rollout: it rolls back, generation 2 keeps serving, the fleet holds.
  writeFileSync(specFile, spec(5, '5s').replace('outputs: [qcow2]', 'outputs: [raw]'));
  expect((await kubedos(['deploy', specFile, '--no-wait'], env)).code).toBe(0);
  await waitFor((s) => s.phase === 'rolling-out');
  expect((await kubedos(['abort', 'herd', '--reason', 'cli test'], env)).code).toBe(0);
  const held = await waitFor((s) => s.phase === 'paused');
  expect(held.generation).toBe(2);
  expect(held.rollouts.at(-1)).toMatchObject({ outcome: 'aborted', error: 'cli test' });
  // Five generation-2 nodes serve. When the abort lands after the rollout had replaced one of
  // them, the rollback brings it back as a new node (cattle), so the ids need not be g2's.
  const serving = held.nodes.filter((n) => n.state === 'ready');
  expect(serving).toHaveLength(5);
  expect(serving.every((n) => n.generation === 2 && n.hostname.startsWith('node-'))).toBe(true);
  expect(held.nodes.filter((n) => n.generation !== 2)).toEqual([]);
  expect(nodeDirs()).toEqual(serving.map((n) => n.nodeId).sort());

  const gone = await kubedos(['down', specFile], env, 120_000);
  expect(gone.stdout).toMatch(/cli\/herd: destroyed 5 node\(s\)/);
  expect(nodeDirs()).toEqual([]);
}, 600_000);

test('the control worker killed with SIGKILL mid-provisioning: restarted by the supervisor, the run completes, nothing doubled', async () => {
  writeFileSync(specFile, spec(6, '3s'));
  expect((await kubedos(['deploy', specFile, '--no-wait'], env, 300_000)).code).toBe(0);
  await waitFor((s) => s.phase === 'rolling-out', 60_000);
  await sleep(1500); // nodes are booting: health-check activities are in flight
  const victim = stack().workers.control.pid;
  process.kill(victim, 'SIGKILL');
  while (pidAlive(victim)) await sleep(50);
  // Nobody runs a command: the stack's supervisor restarts the worker by itself.
  const healed = Date.now() + 60_000;
  while (!(stack().workers.control.pid !== victim && pidAlive(stack().workers.control.pid)) && Date.now() < healed) await sleep(100);
  expect(stack().workers.control).toMatchObject({ restarts: 1, lastExit: { signal: 'SIGKILL' } });
  expect(pidAlive(stack().workers.control.pid)).toBe(true);

  const done = await waitFor((s) => s.phase === 'steady' && ready(s) === 6, 240_000);
  expect(new Set(done.nodes.map((n) => n.nodeId)).size).toBe(6);
  expect(nodeDirs()).toEqual(done.nodes.map((n) => n.nodeId).sort());
  expect(runningNodePids()).toHaveLength(6);
}, 600_000);

test('the dev server killed mid-run: restarted by the supervisor, the run resumes and completes', async () => {
  expect((await kubedos(['scale', 'herd', '14'], env)).code).toBe(0);
  await waitFor((s) => s.nodes.some((n) => n.state === 'provisioning'), 60_000);
  const server = stack().server.pid;
  const worker = stack().workers.control.pid;
  process.kill(server, 'SIGKILL');
  while (pidAlive(server)) await sleep(50);
  // Restarted by the supervisor on the same port; the worker reconnects (it is not restarted).
  const healed = Date.now() + 120_000;
  while (!(stack().server.pid !== server && stack().server.state === 'running') && Date.now() < healed) await sleep(100);
  expect(stack().server).toMatchObject({ state: 'running', lastExit: { signal: 'SIGKILL' } });
  expect(stack().workers.control.pid).toBe(worker);

  const done = await waitFor((s) => s.phase === 'steady' && ready(s) === 14, 300_000);
  expect(nodeDirs()).toEqual(done.nodes.map((n) => n.nodeId).sort());
  expect(runningNodePids()).toHaveLength(14);
  const gone = await kubedos(['down', specFile], env, 120_000);
  expect(gone.stdout).toMatch(/destroyed 14 node\(s\)/);
  expect(runningNodePids()).toHaveLength(0);
}, 600_000);

test('deploy refuses up front, naming the pool, when no worker of a pool it needs polls', async () => {
  // This stack runs only the control pool: a QEMU fleet needs the build and kvm pools.
  const qemuSpec = path.join(home, 'qemu.yaml');
  writeFileSync(qemuSpec, spec(1, '0s').replace(/targets:\n  sim:\n    type: hollow\n    bootDelay: 0s\n/, 'targets:\n  sim:\n    type: qemu\n'));
  const started = Date.now();
  const r = await kubedos(['deploy', qemuSpec], env, 120_000);
  expect(r.code).toBe(5);
  expect(r.stderr).toMatch(/error: no worker of pool (build|kvm) is polling kubedos-(build|kvm) \(waited 2\d s\)/);
  expect(r.stderr).toMatch(/hint: start it with `kubedos stack start`/);
  expect(Date.now() - started).toBeLessThan(60_000);
  // Nothing was started: no fleet, no nodes.
  expect((await kubedos(['status', '--json'], env)).stdout.trim()).toBe('[]');
}, 120_000);
