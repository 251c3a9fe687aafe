/**
 * KubeDos on a production-shaped Temporal cluster (test/support/temporal-cluster.ts: the real
 * temporal-server 1.32.1 as four processes on PostgreSQL 15, dynamic config from the compose
 * stack's file), through the real CLI with TEMPORAL_ADDRESS pointing at it, as a user runs it:
 *
 * - bootstrap: a fresh namespace is refused with the exact commands; `kubedos cluster init`
 *   creates it and registers the search attributes (read back with the stock `temporal` CLI);
 *   a namespace without them (the issue's "no mapping defined for search attribute
 *   KubedosFleet") is fixed on connect; an attribute of the wrong type is refused, and the
 *   commands printed for it, run verbatim, fix it;
 * - a hollow fleet, its workflows on a control worker process of its own: deploy, scale, a
 *   rollout, a forced rollback, a schedule, `kubedos runs` and `history`;
 * - the history service SIGKILLed and restarted mid-rollout: the rollout completes with exactly
 *   the desired nodes (none doubled, none orphaned).
 */
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnDaemon, stopProcess, logTail } from '../../src/exec/daemon';
import type { FleetStatus } from '../../workflows/fleet-api';
import { ROOT, TEMPORAL, cliEnv, kubedos, pidAlive, type CliResult } from '../support/cli';
import { dynamicConfigProblems, restartService, sharedCluster, SERVICES, type ClusterInfo } from '../support/temporal-cluster';

jest.setTimeout(30 * 60_000);

const id = randomUUID().slice(0, 6);
const platform = `c${id}`;
const namespace = `kubedos-${id}`;
let cluster: ClusterInfo;
let home: string;
let workerHome: string;
let specFile: string;
let env: NodeJS.ProcessEnv;
let worker: { pid: number; log: string } | undefined;

function spec(o: { replicas: number; image?: string; bootDelay?: string; prefix?: string; healthTimeout?: string }): string {
  return `apiVersion: kubedos.dev/v1alpha1
kind: Platform
metadata:
  name: ${platform}
base:
  sourceDateEpoch: 1735689600
images:
  worker:
    disk: { size: 2GiB }
    outputs: [qcow2]
    hostnamePrefix: ${o.prefix ?? 'worker'}
  broken:
    disk: { size: 2GiB }
    outputs: [qcow2]
targets:
  sim:
    type: hollow
    bootDelay: ${o.bootDelay ?? '0s'}
    unhealthyImages: [broken]
fleets:
  herd:
    image: ${o.image ?? 'worker'}
    target: sim
    replicas: ${o.replicas}
    rollout: { batchSize: 4, maxSurge: 2 }
    healthCheck: { type: readiness, interval: 200ms, timeout: ${o.healthTimeout ?? '2m'}, retries: 0 }
schedules:
  nightly:
    cron: "0 3 * * *"
`;
}

/** The stock temporal CLI against the cluster (argv after `temporal`). */
function temporal(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(TEMPORAL, [...args, '--address', cluster.address], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Search attributes of a namespace as the stock CLI lists them: name → type. */
function listedAttributes(ns: string): Record<string, string> {
  const r = temporal(['operator', 'search-attribute', 'list', '--namespace', ns, '--output', 'json']);
  if (r.status !== 0) throw new Error(`search-attribute list failed: ${r.stderr}`);
  const parsed = JSON.parse(r.stdout) as { customAttributes?: Record<string, string> } | Array<{ name: string; type: string }>;
  const raw = Array.isArray(parsed) ? Object.fromEntries(parsed.map((a) => [a.name, a.type])) : (parsed.customAttributes ?? {});
  return Object.fromEntries(Object.entries(raw).filter(([k]) => k.startsWith('Kubedos')).map(([k, v]) => [k, String(v).replace(/^INDEXED_VALUE_TYPE_/, '').toLowerCase()]));
}
const KEYWORDS = { KubedosFleet: 'keyword', KubedosImage: 'keyword', KubedosTarget: 'keyword', KubedosPhase: 'keyword' };

/** A namespace made with the stock CLI (as auto-setup or an operator would), waited until it answers. */
async function createNamespace(ns: string): Promise<void> {
  const r = temporal(['operator', 'namespace', 'create', '--namespace', ns]);
  if (r.status !== 0) throw new Error(`namespace create failed: ${r.stderr}`);
  for (let i = 0; i < 60 && temporal(['operator', 'namespace', 'describe', '--namespace', ns]).status !== 0; i++) await sleep(250);
}

async function ok(args: string[], e = env, timeoutMs = 300_000): Promise<string> {
  const r = await kubedos(args, e, timeoutMs);
  if (r.code !== 0) throw new Error(`kubedos ${args.join(' ')} exited ${r.code}\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

async function status(): Promise<FleetStatus> {
  return JSON.parse(await ok(['status', `${platform}/herd`, '--json']));
}

async function waitFor(what: string, good: (s: FleetStatus) => boolean, timeoutMs = 240_000): Promise<FleetStatus> {
  let last: FleetStatus | undefined;
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await sleep(500)) {
    last = await status().catch(() => undefined);
    if (last && good(last)) return last;
  }
  throw new Error(`fleet never ${what}; last: ${JSON.stringify(last && { phase: last.phase, generation: last.generation, nodes: last.nodes.map((n) => `${n.nodeId}:${n.state}:g${n.generation}`) })}\nworker log:\n${worker && logTail(worker.log, 20)}`);
}

const ready = (s: FleetStatus) => s.nodes.filter((n) => n.state === 'ready').length;
const nodesDir = () => path.join(workerHome, 'targets', 'sim', 'nodes');
const nodeDirs = () => (existsSync(nodesDir()) ? readdirSync(nodesDir()).sort() : []);
const livePids = () => nodeDirs().map((d) => Number(readFileSync(path.join(nodesDir(), d, 'pid'), 'utf8'))).filter((pid) => pidAlive(pid));

/** The control pool's worker, as a host of its own runs it: `node dist/workers/control.js`. */
function startControlWorker(): void {
  const log = path.join(workerHome, 'logs', 'worker-control.log');
  const pid = spawnDaemon([process.execPath, path.join(ROOT, 'dist', 'workers', 'control.js')], {
    logFile: log,
    detached: false,
    env: { ...env, KUBEDOS_HOME: workerHome, PATH: `${path.join(ROOT, '.tools', 'bin')}:${process.env.PATH}` },
  });
  worker = { pid, log };
}

beforeAll(async () => {
  cluster = await sharedCluster();
  home = mkdtempSync(path.join(os.tmpdir(), 'kubedos-cluster-cli-'));
  workerHome = mkdtempSync(path.join(os.tmpdir(), 'kubedos-cluster-control-'));
  specFile = path.join(home, 'kubedos.yaml');
  writeFileSync(specFile, spec({ replicas: 3 }));
  env = cliEnv({ KUBEDOS_HOME: home, TEMPORAL_ADDRESS: cluster.address, TEMPORAL_NAMESPACE: namespace });
});

afterAll(async () => {
  if (worker && cluster) await kubedos(['down', specFile], env, 120_000).catch(() => undefined);
  await kubedos(['schedule', 'delete', `${platform}/nightly`], env).catch(() => undefined);
  if (worker) await stopProcess(worker.pid, 'workers/control.js', 30_000);
  // Whatever happened above: no hollow node outlives the test.
  for (const pid of workerHome ? livePids() : []) process.kill(pid, 'SIGKILL');
  for (const dir of [home, workerHome]) if (dir) rmSync(dir, { recursive: true, force: true });
});

test('the cluster: four services on PostgreSQL, the production dynamic config valid', async () => {
  expect(await dynamicConfigProblems()).toEqual([]);
  // The check can fail: an unknown key and a value of the wrong type are both reported.
  const bad = path.join(home, 'bad-dynamic-config.yaml');
  writeFileSync(bad, 'system.enableActivityEagerExecution:\n  - value: maybe\n    constraints: {}\nkubedos.noSuchKey:\n  - value: 1\n');
  expect(await dynamicConfigProblems(bad)).toEqual([
    expect.stringMatching(/^warning: (unregistered key "kubedos.nosuchkey"|validation failed: key "system.enableactivityeagerexecution")/i),
    expect.stringMatching(/^warning: (unregistered key "kubedos.nosuchkey"|validation failed: key "system.enableactivityeagerexecution")/i),
  ]);
  for (const s of SERVICES) {
    const argv = readFileSync(`/proc/${cluster.services[s].pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    expect(argv.slice(-3)).toEqual(['start', '--service', s]);
  }
  const ports = cluster.address.split(':')[1]!;
  expect(['7233', '8000']).not.toContain(ports);
  const described = temporal(['operator', 'cluster', 'describe', '--output', 'json']);
  expect(described.status).toBe(0);
  expect(JSON.parse(described.stdout)).toMatchObject({ persistenceStore: 'postgres12', visibilityStore: 'postgres12' });
});

test('bootstrap: refused with the exact commands; cluster init creates the namespace and the attributes; again is a no-op', async () => {
  const refused = await kubedos(['runs'], env);
  expect(refused.code).toBe(4);
  expect(refused.stderr).toContain(`error: the Temporal cluster at ${cluster.address} is not ready for KubeDos: namespace ${namespace} does not exist`);
  expect(refused.stderr).toContain('`kubedos cluster init` creates the namespace and registers the search attributes');
  expect(refused.stderr).toContain(`temporal operator namespace create --address ${cluster.address} --namespace ${namespace} --retention 720h`);

  const check = await kubedos(['cluster', 'init', '--check', '--json'], env);
  expect(check.code).toBe(4);
  expect(JSON.parse(check.stdout)).toMatchObject({ namespace, namespaceExists: false, ready: false });

  const init = JSON.parse(await ok(['cluster', 'init', '--json']));
  expect(init).toMatchObject({ address: cluster.address, namespace, namespaceExists: true, namespaceCreated: true, ready: true, embedded: false });
  expect(init.attributes.map((a: { name: string; created?: boolean }) => [a.name, a.created])).toEqual(Object.keys(KEYWORDS).map((n) => [n, true]));
  // What the server has, read by the stock CLI.
  expect(listedAttributes(namespace)).toEqual(KEYWORDS);
  const described = JSON.parse(temporal(['operator', 'namespace', 'describe', '--namespace', namespace, '--output', 'json']).stdout);
  expect(described.config.workflowExecutionRetentionTtl).toBe('2592000s');

  const again = await ok(['cluster', 'init']);
  expect(again).toMatch(new RegExp(`namespace +${namespace}: exists`));
  expect(again).toMatch(/KubedosFleet +Keyword +present/);
  expect(again).not.toMatch(/registered now|created/);
});

test('bootstrap on connect: a bare namespace gets its attributes; a wrong type is refused and the printed commands fix it', async () => {
  // The issue's case: the namespace exists (auto-setup made it), the attributes do not.
  const bare = `${namespace}-bare`;
  await createNamespace(bare);
  const bareEnv = { ...env, TEMPORAL_NAMESPACE: bare };
  const listed = await kubedos(['runs', '--json'], bareEnv);
  expect(listed.code).toBe(0);
  expect(JSON.parse(listed.stdout)).toMatchObject({ runs: [] });
  expect(listed.stderr).toContain('registered the KubeDos search attributes');
  expect(listedAttributes(bare)).toEqual(KEYWORDS);
  // The verdict is cached: the next command says nothing and registers nothing.
  expect(readdirSync(path.join(home, 'cluster')).length).toBeGreaterThanOrEqual(1);
  const quiet = await kubedos(['runs', '--json'], bareEnv);
  expect(quiet.stderr).toBe('');

  // An attribute registered with another type is never changed behind anyone's back.
  const wrong = `${namespace}-wrong`;
  await createNamespace(wrong);
  expect(temporal(['operator', 'search-attribute', 'create', '--namespace', wrong, '--name', 'KubedosPhase', '--type', 'Text']).status).toBe(0);
  const wrongEnv = { ...env, TEMPORAL_NAMESPACE: wrong };
  const refused: CliResult = await kubedos(['cluster', 'init'], wrongEnv);
  expect(refused.code).toBe(4);
  expect(refused.stderr).toContain('search attributes with the wrong type: KubedosPhase is Text, needs Keyword');
  const commands = refused.stderr.split('\n').map((l) => l.trim()).filter((l) => l.startsWith('temporal operator '));
  expect(commands).toEqual([
    `temporal operator search-attribute remove --address ${cluster.address} --namespace ${wrong} --name KubedosPhase --yes`,
    `temporal operator search-attribute create --address ${cluster.address} --namespace ${wrong} --name KubedosPhase --type Keyword`,
  ]);
  // What could be registered was (the three missing ones); the wrong one was left alone.
  expect(listedAttributes(wrong)).toEqual({ ...KEYWORDS, KubedosPhase: 'text' });
  // Run them verbatim with the stock CLI: then the namespace is ready.
  for (const c of commands) {
    const argv = c.split(' ').slice(1);
    const r = spawnSync(TEMPORAL, argv, { encoding: 'utf8' });
    expect({ c, status: r.status, stderr: r.stderr }).toEqual({ c, status: 0, stderr: '' });
  }
  expect(listedAttributes(wrong)).toEqual(KEYWORDS);
  expect(await ok(['cluster', 'init', '--check'], wrongEnv)).toMatch(/KubedosPhase +Keyword +present/);
});

test('a hollow fleet on the cluster: deploy, scale, rollout, forced rollback, schedule, runs and history', async () => {
  startControlWorker();
  const up = JSON.parse(await ok(['deploy', specFile, '--json']));
  expect(up.fleets[0]).toMatchObject({ outcome: 'ok', phase: 'steady', generation: 1 });
  expect(ready(up.fleets[0])).toBe(3);
  expect(nodeDirs()).toEqual([0, 1, 2].map((i) => `${platform}-herd-000${i}`));

  await ok(['scale', `${platform}/herd`, '5']);
  await waitFor('scaled to 5', (s) => s.phase === 'steady' && ready(s) === 5);
  expect(livePids()).toHaveLength(5);

  // A new image: generation 2 replaces every node.
  writeFileSync(specFile, spec({ replicas: 5, prefix: 'node' }));
  const g2 = JSON.parse(await ok(['deploy', specFile, '--json'])).fleets[0] as FleetStatus & { outcome: string };
  expect(g2).toMatchObject({ outcome: 'ok', generation: 2 });
  expect(g2.nodes.every((n) => n.hostname.startsWith('node-') && n.generation === 2)).toBe(true);
  await waitFor('settled on generation 2', (s) => s.phase === 'steady' && s.nodes.length === 5);
  expect(nodeDirs()).toHaveLength(5);

  // An image whose nodes never get healthy: the rollout rolls back, generation 2 keeps serving.
  writeFileSync(specFile, spec({ replicas: 5, prefix: 'node', image: 'broken', healthTimeout: '5s' }));
  const bad = await kubedos(['deploy', specFile, '--json'], env, 300_000);
  expect(bad.code).toBe(1);
  const held = await waitFor('rolled back', (s) => s.phase === 'steady' && s.rollouts.at(-1)?.outcome === 'rolled-back');
  expect(held.generation).toBe(2);
  expect(held.nodes.filter((n) => n.state === 'ready').map((n) => n.nodeId).sort()).toEqual(g2.nodes.map((n) => n.nodeId).sort());
  expect(nodeDirs()).toEqual(g2.nodes.map((n) => n.nodeId).sort());

  // A schedule, on the cluster's Schedules.
  const applied = JSON.parse(await ok(['schedule', 'apply', specFile, '--json'])).schedules;
  expect(applied.map((a: { schedule: string; outcome: string }) => [a.schedule, a.outcome])).toEqual([[`${platform}/nightly`, 'created']]);
  const described = JSON.parse(await ok(['schedule', 'describe', `${platform}/nightly`, '--json']));
  expect(described).toMatchObject({ schedule: `${platform}/nightly`, paused: false });
  expect(described.nextRuns[0]).toMatch(/T03:00:00\.000Z$/);
  const listed = JSON.parse(await ok(['schedule', 'list', '--json'])).schedules.map((s: { schedule: string }) => s.schedule);
  expect(listed).toContain(`${platform}/nightly`);

  // runs and history, through the cluster's SQL visibility.
  let rollouts: { workflowId: string; status: string }[] = [];
  for (const deadline = Date.now() + 60_000; Date.now() < deadline && rollouts.length < 3; await sleep(500)) {
    rollouts = JSON.parse(await ok(['runs', '--fleet', 'herd', '--type', 'rollout', '--json'])).runs;
  }
  expect(rollouts.map((r) => r.status)).toEqual(['failed', 'completed', 'completed']);
  const failed = JSON.parse(await ok(['runs', '--fleet', 'herd', '--failed', '--json'])).runs;
  expect(failed[0]).toMatchObject({ type: 'rollout', status: 'failed', image: 'broken', target: 'sim' });
  const history = await ok(['history', failed[0].workflowId]);
  expect(history).toContain('RolloutRolledBack: rollout to generation 3 rolled back');
  expect(history).not.toContain('‹encrypted›');
  await ok(['schedule', 'delete', `${platform}/nightly`]);
});

test('the history service SIGKILLed and restarted mid-rollout: the rollout completes, nothing doubled', async () => {
  // The next generation is the serving one plus one (a rolled-back rollout's number is reused).
  const next = (await status()).generation + 1;
  // Boots slow enough (two waves of four, 6 s each) that the kill lands inside the rollout.
  writeFileSync(specFile, spec({ replicas: 8, prefix: 'gen4', bootDelay: '6s' }));
  await ok(['deploy', specFile, '--no-wait']);
  // Mid-rollout: the rollout (a child workflow) has started creating new nodes on the target.
  const before = new Set(nodeDirs());
  await waitFor('started rolling out', (s) => s.phase === 'rolling-out' && nodeDirs().some((d) => !before.has(d)), 120_000);
  const killed = cluster.services.history.pid;
  cluster = await restartService(cluster, 'history', { kill: true, downMs: 3_000 });
  expect(cluster.services.history.pid).not.toBe(killed);
  expect(pidAlive(killed)).toBe(false);
  // The kill landed inside the rollout: it had not finished while history was down.
  expect((await status()).generation).toBeLessThan(next);

  const done = await waitFor(`completed generation ${next}`, (s) => s.phase === 'steady' && s.generation === next && ready(s) === 8 && s.nodes.length === 8, 300_000);
  expect(done.nodes.every((n) => n.hostname.startsWith('gen4-'))).toBe(true);
  expect(new Set(done.nodes.map((n) => n.nodeId)).size).toBe(8);
  // The target holds exactly the fleet's nodes: none doubled by a retried create, none orphaned.
  expect(nodeDirs()).toEqual(done.nodes.map((n) => n.nodeId).sort());
  expect(livePids()).toHaveLength(8);

  const gone = await ok(['down', specFile], env, 180_000);
  expect(gone).toMatch(new RegExp(`${platform}/herd: destroyed 8 node\\(s\\)`));
  expect(livePids()).toHaveLength(0);
});
