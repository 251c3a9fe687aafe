/**
 * bench/chaos: the embedded stack under SIGKILL. N times (default 100), a fleet of hollow nodes
 * goes through deploy (3 nodes), scale (to 5), rollout (a new image) and a forced rollback (an
 * image whose nodes never pass their health check) and is torn down, while one process of the
 * stack, chosen at random, is SIGKILLed at a random moment: the control worker pool, the Temporal
 * dev server or the codec endpoint (`--victims` adds `supervisor`). Nobody runs a command to help:
 * the stack's supervisor must bring the process back, and every run must converge by itself.
 * Prints figures; not a test.
 *
 *   bench/chaos [-n 100] [--seed S] [--victims control,server,codec] [--json] [--keep]
 *
 * After every step and every iteration it checks, and reports as a violation (with the
 * iteration's seed, to replay it alone with `--seed S -n 1`):
 *   - converged: the fleet reaches the step's desired state (phase, generation, replicas, image,
 *     the rollout's outcome) within the step's deadline;
 *   - nothing doubled or orphaned: the driver's `list` of the platform equals the fleet's
 *     status (same node ids, every one running), exactly one hollow-node process per node, none
 *     for a node the fleet does not have;
 *   - nothing half-written: every node's state files are complete (labels, identity, host key)
 *     and no temporary file is left under the targets' state; stack.json parses;
 *   - no run lost: after teardown, every workflow of the iteration is closed, as expected (fleet
 *     and rollouts completed, the forced rollback failed as rolled back, nodes completed or
 *     cancelled), and the fleet reports destroying what it had;
 *   - the stack healed: the victim is replaced and serving (server ready, worker polling its
 *     queue, codec endpoint answering), one process of each kind, no crash loop.
 * Recovery time is from the kill to the victim serving again. One iteration takes seconds; 100
 * fit in well under an hour on 2 cores. Runs in its own KUBEDOS_HOME (a temp dir).
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const args = process.argv.slice(2);
const flag = (name: string) => args.includes(name);
const option = (names: string[], fallback: string) => {
  const i = args.findIndex((a) => names.includes(a));
  return i >= 0 && args[i + 1] ? args[i + 1]! : fallback;
};
const N = Number(option(['-n', '--iterations'], '100'));
const seedArg = option(['--seed'], '');
const masterSeed = seedArg ? Number(seedArg) >>> 0 : Math.floor(Math.random() * 2 ** 32);
const VICTIMS = option(['--victims'], 'control,server,codec').split(',') as Victim[];
type Victim = 'control' | 'server' | 'codec' | 'supervisor';

const home = mkdtempSync(path.join(os.tmpdir(), 'kubedos-bench-chaos-'));
process.env.KUBEDOS_HOME = home;
process.env.KUBEDOS_POOLS = 'control';
process.env.KUBEDOS_HEADLESS = '1';
process.env.KUBEDOS_LOG_LEVEL ??= 'warn';
delete process.env.TEMPORAL_ADDRESS;

// Imported after the environment is set: paths and pools are read from it.
const { startStack, stopStack } = require('../src/temporal/stack') as typeof import('../src/temporal/stack');
const { codecDataConverter, loadCodecKeyring } = require('../src/temporal/codec') as typeof import('../src/temporal/codec');
const { activityPollers } = require('../src/temporal/pollers') as typeof import('../src/temporal/pollers');
const { createDriver } = require('../src/targets') as typeof import('../src/targets');
const { isCrashLooping } = require('../src/exec/supervisor') as typeof import('../src/exec/supervisor');
const api = require('../workflows/fleet-api') as typeof import('../workflows/fleet-api');
const { POOLS } = require('../src/pools/pools') as typeof import('../src/pools/pools');
const { Client, Connection, WorkflowExecutionAlreadyStartedError } = require('@temporalio/client') as typeof import('@temporalio/client');
type FleetStatus = import('../workflows/fleet-api').FleetStatus;
type FleetInput = import('../workflows/fleet-api').FleetInput;
type ClientT = import('@temporalio/client').Client;
type StackFile = import('../src/temporal/stack').StackState;

const IMAGES = { A: { name: 'worker', digest: 'a'.repeat(64) }, B: { name: 'worker', digest: 'b'.repeat(64) }, C: { name: 'broken', digest: 'c'.repeat(64) } };
const STEP_DEADLINE_MS = 240_000;

/** mulberry32: a small seeded PRNG, so an iteration's kill (victim and moment) replays from its seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Iteration i's seed: the master seed itself for the first, so `--seed S -n 1` replays any iteration. */
function iterationSeed(i: number): number {
  if (i === 0) return masterSeed;
  return createHash('sha256').update(`${masterSeed}:${i}`).digest().readUInt32BE(0);
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

const stackFile = (): StackFile => JSON.parse(readFileSync(path.join(home, 'stack.json'), 'utf8')) as StackFile;

function cmdline(pid: string): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
}
function alive(pid: string): boolean {
  try {
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}
function envOf(pid: string): string {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'utf8');
  } catch {
    return '';
  }
}

/** Live processes of this home, by kind (to find doubles), and hollow nodes by node directory. */
function processes(): { kinds: Record<string, number[]>; nodes: Map<string, number[]> } {
  const kinds: Record<string, number[]> = { server: [], codec: [], control: [], supervisor: [] };
  const nodes = new Map<string, number[]>();
  const mine = `KUBEDOS_HOME=${home}\0`;
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    const argv = cmdline(pid);
    if (!argv.length || !alive(pid)) continue;
    const joined = argv.join(' ');
    if (joined.includes('kubedos-hollow-node') && joined.includes(home)) {
      const dir = argv[argv.indexOf('-dir') + 1]!;
      nodes.set(path.basename(dir), [...(nodes.get(path.basename(dir)) ?? []), Number(pid)]);
    } else if (joined.includes('start-dev') && joined.includes(home)) kinds.server!.push(Number(pid));
    else if (joined.includes('codec-server.js') && envOf(pid).includes(mine)) kinds.codec!.push(Number(pid));
    else if (joined.includes('workers/control.js') && envOf(pid).includes(mine)) kinds.control!.push(Number(pid));
    else if (joined.includes('stack-daemon.js') && envOf(pid).includes(mine)) kinds.supervisor!.push(Number(pid));
  }
  return { kinds, nodes };
}

/** Retry an RPC through outages (the server restarting, the control worker gone) until the deadline. */
async function retrying<T>(label: string, fn: () => Promise<T>, deadline: number): Promise<T> {
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      return await fn();
    } catch (err) {
      last = err;
      await sleep(250);
    }
  }
  throw new Error(`${label}: still failing at the deadline: ${(last as Error)?.message ?? last}`);
}

interface Kill {
  victim: Victim;
  atMs: number;
  pid?: number;
  step?: string;
  recoveryMs?: number;
}

interface IterationResult {
  index: number;
  seed: number;
  kill?: Kill;
  ms: number;
  stepMs: Record<string, number>;
  violations: string[];
}

class Iteration {
  readonly violations: string[] = [];
  readonly stepMs: Record<string, number> = {};
  private stepStarted = Date.now();
  private current = 'starting';
  get step(): string {
    return this.current;
  }
  set step(next: string) {
    this.stepMs[this.current] = Date.now() - this.stepStarted;
    this.stepStarted = Date.now();
    this.current = next;
  }
  constructor(
    readonly index: number,
    readonly seed: number,
    readonly client: ClientT,
  ) {}

  get platform(): string {
    return `chaos${this.index}`;
  }

  input(): FleetInput {
    return {
      platform: this.platform,
      fleet: 'herd',
      target: { name: 'sim', spec: { type: 'hollow', bootDelay: 100, unhealthyImages: ['broken'] } as never },
      deployQueue: POOLS.control.taskQueue,
      hostnamePrefix: 'node',
      authorizedKeys: [],
      healthCheck: { type: 'readiness', timeout: 3_000, interval: 100, retries: 0 } as never,
      rollout: { maxSurge: '100%', maxUnavailable: 0, failureThreshold: 1, batchSize: 5 },
      image: IMAGES.A,
      replicas: 3,
    };
  }

  handle() {
    return this.client.workflow.getHandle(api.fleetWorkflowId(this.platform, 'herd'));
  }

  async status(deadline: number): Promise<FleetStatus> {
    return retrying('status query', () => this.client.connection.withDeadline(Date.now() + 5_000, () => this.handle().query(api.fleetStatusQuery)), deadline);
  }

  /** Wait for the step's desired state; a violation when it is not reached in time. */
  async converge(what: string, ok: (s: FleetStatus) => boolean): Promise<FleetStatus | undefined> {
    const deadline = Date.now() + STEP_DEADLINE_MS;
    let last: FleetStatus | undefined;
    while (Date.now() < deadline) {
      last = await this.status(deadline).catch(() => last);
      if (last && ok(last)) return last;
      await sleep(200);
    }
    this.violations.push(`${what}: not converged within ${STEP_DEADLINE_MS / 1000} s; last: ${last ? `${last.phase} g${last.generation} ${last.nodes.map((n) => `${n.nodeId}:${n.state}`).join(',')} (${last.step})` : 'no status'}`);
    return undefined;
  }

  /** Driver list = fleet status; one process per node; state files complete; no temporary files. */
  async consistent(what: string, status: FleetStatus): Promise<void> {
    const driver = await createDriver('sim', this.input().target.spec);
    const listed = await driver.list({ platform: this.platform }, {});
    const want = status.nodes.filter((n) => n.state !== 'failed').map((n) => n.nodeId).sort();
    const have = listed.map((n) => n.nodeId).sort();
    if (JSON.stringify(want) !== JSON.stringify(have)) this.violations.push(`${what}: the driver lists ${have.join(',') || 'nothing'}, the fleet has ${want.join(',') || 'nothing'}`);
    const notRunning = listed.filter((n) => !n.running).map((n) => n.nodeId);
    if (notRunning.length) this.violations.push(`${what}: listed but not running: ${notRunning.join(',')}`);
    if (new Set(status.nodes.map((n) => n.nodeId)).size !== status.nodes.length) this.violations.push(`${what}: a node id appears twice in the fleet's status`);
    const { nodes } = processes();
    for (const [node, pids] of nodes) {
      if (!node.startsWith(`${this.platform}-`)) continue;
      if (pids.length > 1) this.violations.push(`${what}: node ${node} runs ${pids.length} processes (${pids.join(',')})`);
      if (!want.includes(node)) this.violations.push(`${what}: orphan process for node ${node} (pid ${pids.join(',')})`);
    }
    this.halfWritten(what);
  }

  halfWritten(what: string): void {
    const root = path.join(home, 'targets', 'sim', 'nodes');
    for (const dir of readdirSync(root, { withFileTypes: true }).filter((d) => d.isDirectory() && d.name.startsWith(`${this.platform}-`))) {
      const files = readdirSync(path.join(root, dir.name));
      const tmp = files.filter((f) => f.includes('.tmp'));
      if (tmp.length) this.violations.push(`${what}: temporary files left in ${dir.name}: ${tmp.join(',')}`);
      if (files.includes('labels.json')) {
        for (const f of ['identity.json', 'host_key', 'authorized_keys']) if (!files.includes(f)) this.violations.push(`${what}: ${dir.name} has labels.json but no ${f}`);
        try {
          JSON.parse(readFileSync(path.join(root, dir.name, 'labels.json'), 'utf8'));
          JSON.parse(readFileSync(path.join(root, dir.name, 'identity.json'), 'utf8'));
        } catch (err) {
          this.violations.push(`${what}: ${dir.name}: a state file does not parse: ${(err as Error).message}`);
        }
      }
    }
    try {
      stackFile();
    } catch (err) {
      this.violations.push(`${what}: stack.json does not parse: ${(err as Error).message}`);
    }
  }

  /** deploy → scale → rollout → forced rollback → teardown, each converged and checked. */
  async run(): Promise<void> {
    const deadline = () => Date.now() + STEP_DEADLINE_MS;
    const ready = (s: FleetStatus, g: number) => s.nodes.filter((n) => n.state === 'ready' && n.generation === g).length;
    const steady = (s: FleetStatus, g: number, n: number) => s.phase === 'steady' && s.generation === g && ready(s, g) === n && s.nodes.every((x) => x.state === 'ready' || x.state === 'failed');

    this.step = 'deploy';
    await retrying(
      'start',
      () =>
        this.client.workflow.start('fleet', { taskQueue: POOLS.control.taskQueue, workflowId: api.fleetWorkflowId(this.platform, 'herd'), args: [this.input()] }).catch((err) => {
          if (err instanceof WorkflowExecutionAlreadyStartedError) return undefined; // a retry of a start that got through
          throw err;
        }),
      deadline(),
    );
    let s = await this.converge('deploy', (x) => steady(x, 1, 3));
    if (s) await this.consistent('deploy', s);

    this.step = 'scale';
    await retrying('scale', () => this.handle().executeUpdate(api.scaleUpdate, { args: [5], updateId: `${this.platform}-scale` }), deadline());
    s = await this.converge('scale', (x) => steady(x, 1, 5));
    if (s) await this.consistent('scale', s);

    this.step = 'rollout';
    await retrying('rollout', () => this.handle().executeUpdate(api.deployUpdate, { args: [{ image: IMAGES.B }], updateId: `${this.platform}-rollout` }), deadline());
    s = await this.converge('rollout', (x) => steady(x, 2, 5) && x.rollouts.at(-1)?.to === 2 && x.rollouts.at(-1)?.outcome === 'completed');
    if (s) await this.consistent('rollout', s);

    this.step = 'rollback';
    await retrying('forced rollback', () => this.handle().executeUpdate(api.deployUpdate, { args: [{ image: IMAGES.C }], updateId: `${this.platform}-rollback` }), deadline());
    s = await this.converge('rollback', (x) => steady(x, 2, 5) && x.rollouts.at(-1)?.to === 3 && x.rollouts.at(-1)?.outcome === 'rolled-back' && x.desired.image.digest === IMAGES.B.digest);
    if (s) await this.consistent('rollback', s);

    this.step = 'teardown';
    // The fleet destroys every node it has a record of: the ready ones and the failed ones it keeps.
    const had = s?.nodes.length;
    await retrying('teardown', () => this.handle().signal(api.teardownSignal), deadline());
    const result = await retrying('teardown result', () => this.client.connection.withDeadline(Date.now() + 10_000, () => this.handle().result() as Promise<{ destroyed: number }>), deadline()).catch((err: Error) => {
      this.violations.push(`teardown: ${err.message}`);
      return undefined;
    });
    if (result && had !== undefined && result.destroyed !== had) this.violations.push(`teardown: destroyed ${result.destroyed} node(s), the fleet had ${had}`);
    this.step = 'checks';
    await this.lostRuns();
    this.step = 'idle';
  }

  /** Every workflow of the iteration closed, as expected; nothing left on the target. */
  async lostRuns(): Promise<void> {
    const driver = await createDriver('sim', this.input().target.spec);
    const left = await driver.list({ platform: this.platform }, {});
    if (left.length) this.violations.push(`after teardown the driver still lists ${left.map((n) => n.nodeId).join(',')}`);
    const procs = [...processes().nodes.keys()].filter((n) => n.startsWith(`${this.platform}-`));
    if (procs.length) this.violations.push(`after teardown node processes still run: ${procs.join(',')}`);
    this.halfWritten('after teardown');
    // Visibility is eventually consistent: look until nothing is running (or the deadline).
    const deadline = Date.now() + 60_000;
    let bad: string[] = [];
    let count = 0;
    while (Date.now() < deadline) {
      bad = [];
      count = 0;
      try {
        for await (const wf of this.client.workflow.list({ query: `WorkflowId STARTS_WITH 'fleet/${this.platform}/'` })) {
          count++;
          const status = wf.status.name;
          const kind = /\/node\//.test(wf.workflowId) ? 'node' : /\/rollout\//.test(wf.workflowId) ? 'rollout' : 'fleet';
          const ok =
            (kind === 'fleet' && status === 'COMPLETED') ||
            (kind === 'node' && (status === 'COMPLETED' || status === 'CANCELLED')) ||
            (kind === 'rollout' && (status === 'COMPLETED' || (status === 'FAILED' && wf.workflowId.endsWith('/g3'))));
          if (!ok) bad.push(`${wf.workflowId} ${status}`);
        }
      } catch (err) {
        bad = [`cannot list workflows: ${(err as Error).message}`];
      }
      if (!bad.length && count > 0) return;
      await sleep(500);
    }
    this.violations.push(`runs not closed as expected (${count} workflows): ${bad.join('; ')}`);
  }
}

/** The SIGKILLs this bench dealt each victim: the supervisor counts them as crashes too. */
const killsDealt: Record<Victim, number> = { control: 0, server: 0, codec: 0, supervisor: 0 };

/** Kill the victim; resolves with the pid killed (undefined when it was not running). */
function kill(victim: Victim): number | undefined {
  const st = stackFile();
  const pid = victim === 'server' ? st.server?.pid : victim === 'codec' ? st.codec?.pid : victim === 'supervisor' ? st.supervisor?.pid : st.workers.control?.pid;
  if (!pid) return undefined;
  try {
    process.kill(pid, 'SIGKILL');
    killsDealt[victim]++;
    return pid;
  } catch {
    return undefined;
  }
}

/** Until the victim is back and serving; ms from the kill, or undefined after the deadline. */
async function healed(client: ClientT, victim: Victim, pid: number, killedAt: number, deadlineMs = 180_000): Promise<number | undefined> {
  const deadline = killedAt + deadlineMs;
  while (Date.now() < deadline) {
    let st: StackFile | undefined;
    try {
      st = stackFile();
    } catch {
      st = undefined;
    }
    if (st) {
      if (victim === 'server' && st.server?.pid !== pid && st.server?.state === 'running') return Date.now() - killedAt;
      if (victim === 'control') {
        const w = st.workers.control;
        if (w && w.pid !== pid && w.state === 'running') {
          const pollers = await activityPollers(client, POOLS.control.taskQueue).catch(() => []);
          if (pollers.some((p) => p.identity.endsWith(`:${w.pid}`))) return Date.now() - killedAt;
        }
      }
      if (victim === 'codec' && st.codec?.pid !== pid && st.codec?.pid) {
        const ok = await fetch(`http://127.0.0.1:${st.codecPort}/decode`, { method: 'POST', body: '{}' }).then((r) => r.status === 200, () => false);
        if (ok) return Date.now() - killedAt;
      }
      if (victim === 'supervisor') {
        // Nothing restarts a supervisor but the next command: this is that command.
        if (Date.now() - killedAt > 2_000) await startStack({ pools: ['control'] }).catch(() => undefined);
        const s = stackFile();
        if (s.supervisor?.pid && s.supervisor.pid !== pid && processes().kinds.supervisor!.includes(s.supervisor.pid)) return Date.now() - killedAt;
      }
    }
    await sleep(100);
  }
  return undefined;
}

/** Crash loops the supervisor reported that this bench's own kills explain (a SIGKILL every few seconds looks like one). */
const crashLoopsFromKills = new Set<string>();

/**
 * One process of each kind, none crash-looping by itself. The supervisor cannot tell our SIGKILLs
 * from crashes, so kills that come faster than its 60 s stability window are reported as a crash
 * loop (and restarted at a longer backoff): that is the supervisor doing its job. A violation is a
 * crash loop with more crashes than kills we dealt: the process died on its own.
 */
function stackHealthy(): string[] {
  const problems: string[] = [];
  const { kinds } = processes();
  for (const [kind, pids] of Object.entries(kinds)) if (pids.length !== 1) problems.push(`${pids.length} ${kind} processes (${pids.join(',') || 'none'})`);
  const st = stackFile();
  for (const [name, r] of [['server', st.server], ['codec', st.codec], ['control', st.workers.control]] as const) {
    if (!isCrashLooping(r)) continue;
    if ((r?.crashes ?? 0) <= killsDealt[name]) crashLoopsFromKills.add(`${name} after ${r?.crashes} kills in a row`);
    else problems.push(`${name} is crash-looping: ${r?.crashes} crashes in a row, ${killsDealt[name]} of them our kills`);
  }
  return problems;
}

async function iterate(client: ClientT, index: number, budgetMs: number | undefined): Promise<IterationResult> {
  const seed = iterationSeed(index);
  const random = rng(seed);
  const it = new Iteration(index, seed, client);
  const started = Date.now();
  let kill_: Kill | undefined;
  let timer: NodeJS.Timeout | undefined;
  let killed: Promise<void> = Promise.resolve();
  if (budgetMs !== undefined) {
    const victim = VICTIMS[Math.floor(random() * VICTIMS.length)]!;
    const atMs = Math.floor(random() * budgetMs);
    kill_ = { victim, atMs };
    killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        kill_!.step = it.step;
        kill_!.pid = kill(victim);
        const at = Date.now();
        if (!kill_!.pid) {
          it.violations.push(`the ${victim} was not running when its kill came`);
          resolve();
          return;
        }
        void healed(client, victim, kill_!.pid, at).then((ms) => {
          kill_!.recoveryMs = ms;
          if (ms === undefined) it.violations.push(`the stack did not heal: the ${victim} killed at ${(atMs / 1000).toFixed(1)} s (${kill_!.step}) is not back and serving after 180 s`);
          resolve();
        });
      }, atMs);
    });
  }
  try {
    await it.run();
  } catch (err) {
    it.violations.push(`${it.step}: ${(err as Error).message}`);
  }
  // A kill planned after the run ended still happens: the stack must heal from it too.
  await killed;
  if (timer) clearTimeout(timer);
  for (const p of stackHealthy()) it.violations.push(`after the iteration: ${p}`);
  return { index, seed, kill: kill_, ms: Date.now() - started, stepMs: it.stepMs, violations: it.violations };
}

async function main(): Promise<void> {
  const load0 = os.loadavg();
  await startStack({ pools: ['control'] });
  const st = stackFile();
  const connection = await Connection.connect({ address: `127.0.0.1:${st.port}` });
  const client = new Client({ connection, dataConverter: codecDataConverter(loadCodecKeyring({ home })) });
  const results: IterationResult[] = [];
  const t0 = Date.now();
  try {
    // A first run with no kill: checks the invariants hold at all, and sets the window kills fall in.
    const warm = await iterate(client, -1, undefined);
    process.stderr.write(`warm-up steps: ${Object.entries(warm.stepMs).map(([k, v]) => `${k} ${(v / 1000).toFixed(1)} s`).join(', ')}\n`);
    if (warm.violations.length) process.stderr.write(`warm-up run (no kill) violated: ${warm.violations.join('; ')}\n`);
    const budgetMs = warm.ms;
    process.stderr.write(`bench/chaos: warm-up iteration (no kill) ${(warm.ms / 1000).toFixed(1)} s; kills fall in [0, ${(budgetMs / 1000).toFixed(1)} s) of each iteration\n`);
    for (let i = 0; i < N; i++) {
      const r = await iterate(client, i, budgetMs);
      results.push(r);
      process.stderr.write(
        `  #${i} seed ${r.seed}: kill ${r.kill!.victim} at ${(r.kill!.atMs / 1000).toFixed(1)} s (${r.kill!.step}), healed in ${r.kill!.recoveryMs === undefined ? '—' : `${(r.kill!.recoveryMs / 1000).toFixed(1)} s`}, iteration ${(r.ms / 1000).toFixed(1)} s${r.violations.length ? `, VIOLATIONS: ${r.violations.join(' | ')}` : ''}\n`,
      );
    }
  } finally {
    await connection.close();
    await stopStack();
    if (!flag('--keep')) rmSync(home, { recursive: true, force: true });
    else process.stderr.write(`kept ${home}\n`);
  }
  const load1 = os.loadavg();
  const survived = results.filter((r) => !r.violations.length && r.kill?.recoveryMs !== undefined).length;
  const recoveries = results.map((r) => r.kill?.recoveryMs).filter((x): x is number => x !== undefined);
  const byVictim = Object.fromEntries(VICTIMS.map((v) => {
    const ms = results.filter((r) => r.kill?.victim === v && r.kill.recoveryMs !== undefined).map((r) => r.kill!.recoveryMs!);
    return [v, { kills: results.filter((r) => r.kill?.victim === v).length, p50S: percentile(ms, 50) / 1000, p99S: percentile(ms, 99) / 1000 }];
  }));
  const bySteps: Record<string, number> = {};
  for (const r of results) bySteps[r.kill?.step ?? '?'] = (bySteps[r.kill?.step ?? '?'] ?? 0) + 1;
  const figures = {
    iterations: N,
    seed: masterSeed,
    victims: VICTIMS,
    cpus: os.cpus().length,
    load: { start: load0.map((l) => Number(l.toFixed(1))), end: load1.map((l) => Number(l.toFixed(1))) },
    killsSurvived: survived,
    recoveryP50S: percentile(recoveries, 50) / 1000,
    recoveryP99S: percentile(recoveries, 99) / 1000,
    byVictim,
    killsByStep: bySteps,
    iterationP50S: percentile(results.map((r) => r.ms), 50) / 1000,
    iterationP99S: percentile(results.map((r) => r.ms), 99) / 1000,
    totalS: (Date.now() - t0) / 1000,
    crashLoopsFromKills: [...crashLoopsFromKills],
    violations: results.filter((r) => r.violations.length).map((r) => ({ iteration: r.index, seed: r.seed, kill: r.kill, violations: r.violations, replay: `bench/chaos --seed ${r.seed} -n 1` })),
  };
  if (flag('--json')) {
    process.stdout.write(`${JSON.stringify(figures, null, 2)}\n`);
  } else {
    const f = (s: number) => `${s.toFixed(1)} s`;
    process.stdout.write(
      [
        `bench/chaos: ${N} iterations, seed ${masterSeed}, victims ${VICTIMS.join(',')}, ${figures.cpus} CPUs, load ${figures.load.start.join(' ')} → ${figures.load.end.join(' ')}`,
        `kills survived: ${survived}/${N}`,
        `recovery (kill → victim back and serving): p50 ${f(figures.recoveryP50S)}, p99 ${f(figures.recoveryP99S)}  (${VICTIMS.map((v) => `${v}: ${byVictim[v]!.kills} kills, p50 ${f(byVictim[v]!.p50S)}, p99 ${f(byVictim[v]!.p99S)}`).join('; ')})`,
        `kills by step in flight: ${Object.entries(bySteps).map(([k, v]) => `${k} ${v}`).join(', ')}`,
        `iteration: p50 ${f(figures.iterationP50S)}, p99 ${f(figures.iterationP99S)}; total ${(figures.totalS / 60).toFixed(1)} min`,
        `crash loops reported by the supervisor that our kills explain: ${figures.crashLoopsFromKills.join(', ') || 'none'}`,
        figures.violations.length ? 'violations:' : 'violations: none',
        ...figures.violations.map((v) => `  iteration ${v.iteration}, seed ${v.seed} (kill ${v.kill?.victim} at ${((v.kill?.atMs ?? 0) / 1000).toFixed(1)} s, ${v.kill?.step}): ${v.violations.join(' | ')}\n    replay: ${v.replay}`),
      ].join('\n') + '\n',
    );
  }
  process.exitCode = figures.violations.length ? 1 : 0;
}

main().catch((err) => {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exitCode = 1;
});
