/**
 * The embedded stack under the state directory: the real Temporal dev server, one worker
 * process per pool, and the codec endpoint the Web UI decrypts payloads through. Its pids, ports
 * and supervision records live in `$KUBEDOS_HOME/stack.json`, so any later command finds it
 * again, and two stacks with different KUBEDOS_HOME run side by side.
 *
 * The stack supervises what it started (src/exec/supervisor.ts): a crashed worker, dev server or
 * codec endpoint is restarted with backoff, a crash loop is reported, a worker that refuses its
 * queue (missing tools, exit 78) is left stopped and reported. The supervisor is the foreground
 * `kubedos dev` when one runs, otherwise a small daemon (`node dist/src/temporal/stack-daemon.js`)
 * that the first command starts, recorded in stack.json; a command that finds the daemon gone
 * starts another, which adopts the processes still running. While a supervisor lives it alone
 * writes stack.json; commands ask it for changes through request files (more pools, retry, hand
 * over to `kubedos dev`).
 */
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import { env } from '../config/env';
import { projectRoot, stateDir, stateDirIsExplicit } from '../config/paths';
import { ConfigError, TemporalUnavailableError } from '../errors';
import { isOurProcess, logTail, spawnDaemon, stopProcess } from '../exec/daemon';
import { freePort, portIsFree } from '../exec/ports';
import { describeExit, isCrashLooping, Supervisor, type ChildSpec, type ExitRecord, type ProcessRecord, type ProcessState } from '../exec/supervisor';
import { logger } from '../log';
import { POOL_NAMES, POOLS, parsePoolList, type PoolName } from '../pools/pools';
import { loadCodecKeyring } from './codec';
import { uiOrigins } from './codec-server';
import type { ConnectionSettings } from './connection';
import { devServerArgv, findTemporalBinary, temporalVersion, waitForServer } from './dev-server';
import { activityPollers } from './pollers';

const DEFAULT_PORT = 7233;
const IP = '127.0.0.1';
const NAMESPACE = 'default';
/** Exit code a worker uses when it refuses to serve its queue (missing tools). */
export const WORKER_REFUSED_EXIT = 78;

export type SupervisorMode = 'daemon' | 'foreground';

export interface SupervisorRecord {
  pid: number;
  startedAt: string;
  mode: SupervisorMode;
  /** Found in its command line (the daemon's entry point, or the CLI running `kubedos dev`). */
  marker: string;
}

export interface StackState {
  home: string;
  port: number;
  uiPort: number;
  temporalVersion?: string;
  /** Pools the supervisor runs. */
  pools?: PoolName[];
  supervisor?: SupervisorRecord;
  server?: ProcessRecord;
  workers: Partial<Record<PoolName, ProcessRecord>>;
  /** Port of the codec endpoint; the server's UI is pointed at it when the server starts. */
  codecPort?: number;
  codec?: ProcessRecord;
  /** Why the supervisor could not start the stack (read by the command that started it). */
  error?: { message: string; hint?: string };
}

/** One supervised process as `stack status` shows it. */
export interface ProcessStatus {
  pid?: number;
  running: boolean;
  /** The supervisor's state; `exited` when it is gone and no supervisor has noticed yet. */
  state: ProcessState | 'exited';
  restarts: number;
  /** It kept crashing: restarted at the longest backoff, and reported. */
  crashLoop: boolean;
  lastExit?: ExitRecord;
  /** Its log file (why it refused or crashed). */
  log: string;
  /** Last log lines when it does not run, or crash-loops. */
  reason?: string;
}

export interface PoolStatus extends ProcessStatus {
  pool: PoolName;
  taskQueue: string;
}

export interface StackStatus {
  home: string;
  address: string;
  uiUrl: string;
  temporalVersion?: string;
  serverPid?: number;
  serverRunning: boolean;
  server: ProcessStatus;
  /** Remote codec endpoint (for the UI, and `temporal --codec-endpoint`), when the stack has one. */
  codecEndpoint?: string;
  codecRunning: boolean;
  codec?: ProcessStatus;
  supervisor?: { pid: number; running: boolean; mode: SupervisorMode; log: string };
  pools: PoolStatus[];
  /** What people must know: crash loops, a stack nobody supervises. */
  warnings: string[];
}

const files = (home: string) => ({
  state: path.join(home, 'stack.json'),
  lock: path.join(home, 'supervisor.lock'),
  requests: path.join(home, 'supervisor'),
  db: path.join(home, 'temporal', 'temporal.db'),
  serverLog: path.join(home, 'logs', 'temporal.log'),
  workerLog: (pool: PoolName) => path.join(home, 'logs', `worker-${pool}.log`),
  codecLog: path.join(home, 'logs', 'codec-server.log'),
  supervisorLog: path.join(home, 'logs', 'supervisor.log'),
});

function readState(home: string): StackState | undefined {
  try {
    const state = JSON.parse(readFileSync(files(home).state, 'utf8')) as StackState;
    state.workers ??= {};
    return state;
  } catch {
    return undefined;
  }
}

function writeState(state: StackState): void {
  const file = files(state.home).state;
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`);
  renameSync(tmp, file);
}

function portFromEnv(name: 'KUBEDOS_TEMPORAL_PORT' | 'KUBEDOS_UI_PORT'): number | undefined {
  const raw = env(name);
  if (raw === undefined) return undefined;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new ConfigError(`${name}: "${raw}" is not a port number`, 'use an integer between 1 and 65535');
  return port;
}

/**
 * Ports for this home: env overrides win; a home keeps the ports it had; a fresh explicit
 * KUBEDOS_HOME takes free ports when the defaults are taken (so stacks can run side by side).
 */
async function choosePorts(home: string, previous?: StackState): Promise<{ port: number; uiPort: number }> {
  const envPort = portFromEnv('KUBEDOS_TEMPORAL_PORT');
  const envUi = portFromEnv('KUBEDOS_UI_PORT');
  let port = envPort ?? previous?.port ?? DEFAULT_PORT;
  let uiPort = envUi ?? previous?.uiPort ?? port + 1000;
  if (envPort === undefined && !previous && stateDirIsExplicit()) {
    if (!(await portIsFree(port, IP)) || !(await portIsFree(uiPort, IP))) {
      port = await freePort(IP);
      uiPort = envUi ?? (await freePort(IP));
    }
  }
  if (!(await portIsFree(port, IP))) {
    throw new TemporalUnavailableError(
      `port ${port} on ${IP} is taken by another program, so the embedded Temporal server for ${home} cannot start`,
      'stop that program, or set KUBEDOS_TEMPORAL_PORT / KUBEDOS_HOME to run a separate stack',
    );
  }
  return { port, uiPort };
}

const SERVER_MARKER = 'start-dev';
const workerMarker = (pool: PoolName) => `workers/${pool}.js`;
const CODEC_MARKER = 'codec-server.js';
const DAEMON_MARKER = 'stack-daemon.js';
const FOREGROUND_MARKER = path.join('cli', 'main.js');
const codecUrl = (port: number) => `http://${IP}:${port}`;
const poolKey = (pool: PoolName) => `pool:${pool}`;

/** The codec endpoint keeps its port across restarts (the UI of a running server points at it). */
async function chooseCodecPort(previous?: StackState): Promise<number> {
  if (previous?.codecPort && previous.codec?.pid && isOurProcess(previous.codec.pid, CODEC_MARKER)) return previous.codecPort;
  if (previous?.codecPort && (await portIsFree(previous.codecPort, IP))) return previous.codecPort;
  return freePort(IP);
}

function entryPoint(...parts: string[]): string {
  const entry = path.join(projectRoot(), 'dist', ...parts);
  if (!existsSync(entry)) throw new TemporalUnavailableError(`${entry} is missing`, 'run scripts/setup (it compiles the project)');
  return entry;
}

/** Which pools the stack runs: KUBEDOS_POOLS or all of them. */
export function configuredPools(): PoolName[] {
  const raw = env('KUBEDOS_POOLS');
  return raw ? parsePoolList(raw) : [...POOL_NAMES];
}

/** Connection settings for the embedded stack of `home`. */
export function embeddedSettings(state: Pick<StackState, 'port' | 'uiPort'>): ConnectionSettings {
  return {
    address: `${IP}:${state.port}`,
    namespace: NAMESPACE,
    uiUrl: env('KUBEDOS_UI_URL') ?? `http://${IP}:${state.uiPort}`,
    embedded: true,
  };
}

const alive = (record: ProcessRecord | undefined, marker: string) => Boolean(record?.pid && isOurProcess(record.pid, marker));

function liveSupervisor(state?: StackState): SupervisorRecord | undefined {
  const s = state?.supervisor;
  return s && isOurProcess(s.pid, s.marker) ? s : undefined;
}

// --- the supervisor's side -------------------------------------------------------------------

/** A request to a running supervisor: a file in $KUBEDOS_HOME/supervisor/, deleted once handled. */
interface SupervisorRequest {
  /** Supervise these pools too. */
  addPools?: PoolName[];
  /** Start again what refused or backs off (an explicit `kubedos stack start`). */
  retry?: boolean;
  /** Stop supervising and exit, leaving every process running (`kubedos dev` takes over). */
  handover?: boolean;
}

/** Take the supervisor lock of `home`; returns the pid of the live supervisor holding it instead. */
function takeLock(home: string, marker: string): number | undefined {
  const file = files(home).lock;
  mkdirSync(home, { recursive: true });
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      writeFileSync(file, JSON.stringify({ pid: process.pid, marker }), { flag: 'wx' });
      return undefined;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      let holder: { pid: number; marker: string } | undefined;
      try {
        holder = JSON.parse(readFileSync(file, 'utf8')) as { pid: number; marker: string };
      } catch {
        holder = undefined;
      }
      if (holder && holder.pid !== process.pid && isOurProcess(holder.pid, holder.marker)) return holder.pid;
      rmSync(file, { force: true }); // stale: its supervisor is gone
    }
  }
  throw new TemporalUnavailableError(`cannot take the supervisor lock ${file}`, 'remove it if no kubedos dev or stack daemon runs for this home');
}

function releaseLock(home: string): void {
  try {
    const holder = JSON.parse(readFileSync(files(home).lock, 'utf8')) as { pid: number };
    if (holder.pid === process.pid) rmSync(files(home).lock, { force: true });
  } catch {
    /* not ours, or gone */
  }
}

/** What is left of a stopped stack in stack.json: ports and the pools it ran, no processes. */
function stoppedState(state: StackState): StackState {
  return { ...state, supervisor: undefined, server: undefined, codec: undefined, workers: {}, error: undefined };
}

export interface StackSupervision {
  /** Stop every process, then the supervision; stack.json keeps the ports. */
  stop(): Promise<void>;
  /** Resolves when the supervision ends (stopped, or handed over). */
  readonly done: Promise<'stopped' | 'handed-over'>;
}

/**
 * Supervise the stack of this state directory from this process (the daemon, or `kubedos dev`):
 * take the lock, adopt what runs, start what is missing. Throws when another supervisor holds it.
 */
export async function superviseStack(options: { mode: SupervisorMode; pools: PoolName[]; retryRefused: boolean }): Promise<StackSupervision> {
  const home = stateDir();
  const marker = options.mode === 'daemon' ? DAEMON_MARKER : FOREGROUND_MARKER;
  const holder = takeLock(home, marker);
  if (holder !== undefined) throw new ConfigError(`the embedded stack of ${home} is already supervised by pid ${holder}`, 'stop it with `kubedos stack stop` first');
  const f = files(home);
  let state: StackState;
  let supervisor: Supervisor;
  let bin: string;
  try {
    const previous = readState(home);
    bin = await findTemporalBinary();
    // Ports: a live server keeps its own; otherwise the home's, or free ones (see choosePorts).
    const base = previous && alive(previous.server, SERVER_MARKER)
      ? { port: previous.port, uiPort: previous.uiPort, temporalVersion: previous.temporalVersion }
      : { ...(await choosePorts(home, previous)), temporalVersion: await temporalVersion(bin) };
    const codecPort = await chooseCodecPort(previous);
    // Pools: the ones asked for, and any pool of a previous supervisor whose worker still runs.
    const pools = POOL_NAMES.filter((p) => options.pools.includes(p) || alive(previous?.workers[p], workerMarker(p)));
    state = {
      ...(previous ?? { workers: {} }),
      home,
      ...base,
      codecPort,
      pools,
      supervisor: { pid: process.pid, startedAt: new Date().toISOString(), mode: options.mode, marker },
      error: undefined,
    };
    mkdirSync(path.dirname(f.db), { recursive: true });
    writeState(state);
  } catch (err) {
    releaseLock(home);
    throw err;
  }

  const detached = options.mode === 'daemon';
  const records: Record<string, ProcessRecord> = { ...(state.server && { server: state.server }), ...(state.codec && { codec: state.codec }) };
  for (const p of POOL_NAMES) if (state.workers[p]) records[poolKey(p)] = state.workers[p]!;
  let finished: (how: 'stopped' | 'handed-over') => void = () => undefined;
  const done = new Promise<'stopped' | 'handed-over'>((resolve) => (finished = resolve));
  let ended = false;

  const persist = (recs: Record<string, ProcessRecord>) => {
    if (ended) return;
    state = {
      ...state,
      server: recs.server,
      codec: recs.codec,
      workers: Object.fromEntries(state.pools!.filter((p) => recs[poolKey(p)]).map((p) => [p, recs[poolKey(p)]!])),
    };
    writeState(state);
  };

  const settings = embeddedSettings(state);
  const serverSpec: ChildSpec = {
    key: 'server',
    label: 'the Temporal dev server',
    argv: devServerArgv(bin, {
      ip: IP, port: state.port, uiPort: state.uiPort, dbFile: f.db, namespace: NAMESPACE, headless: process.env.KUBEDOS_HEADLESS === '1', codecEndpoint: state.codecPort ? codecUrl(state.codecPort) : undefined,
    }),
    logFile: f.serverLog,
    marker: SERVER_MARKER,
    ready: (_pid, isAlive) => waitForServer(settings.address, NAMESPACE, 120_000, isAlive),
    stopGraceMs: 15_000,
    stopOrder: 2,
  };
  const serverReady = () => supervisor.record('server')?.state === 'running';
  let client: Client | undefined;
  const pollClient = () => (client ??= new Client({ connection: Connection.lazy({ address: settings.address }), namespace: NAMESPACE }));
  const workerSpec = (pool: PoolName): ChildSpec => ({
    key: poolKey(pool),
    label: `worker pool ${pool}`,
    argv: [process.execPath, entryPoint('workers', `${pool}.js`)],
    env: { ...process.env, KUBEDOS_HOME: home, TEMPORAL_ADDRESS: settings.address, TEMPORAL_NAMESPACE: NAMESPACE },
    logFile: f.workerLog(pool),
    marker: workerMarker(pool),
    refusedExit: WORKER_REFUSED_EXIT,
    // A worker cannot connect to a server that is not there: it waits instead of crash-looping.
    gate: serverReady,
    // Running means polling: the server lists it (by its identity, which carries its pid) on its queue.
    ready: (pid, isAlive) => awaitWorkerPolling(pollClient(), pool, pid, isAlive),
    stopOrder: 0,
  });

  const handleRequests = () => {
    let names: string[];
    try {
      names = readdirSync(f.requests).filter((n) => n.endsWith('.json'));
    } catch {
      return;
    }
    for (const name of names) {
      const file = path.join(f.requests, name);
      let req: SupervisorRequest = {};
      try {
        req = JSON.parse(readFileSync(file, 'utf8')) as SupervisorRequest;
      } catch {
        /* half-written by a crashed command: drop it */
      }
      if (req.addPools?.length) {
        const added = req.addPools.filter((p) => POOL_NAMES.includes(p) && !state.pools!.includes(p));
        state = { ...state, pools: POOL_NAMES.filter((p) => state.pools!.includes(p) || added.includes(p)) };
        for (const p of added) supervisor.add(workerSpec(p));
      }
      if (req.retry) supervisor.retry();
      rmSync(file, { force: true });
      if (req.handover && options.mode === 'daemon') {
        logger.info({ pid: process.pid }, 'handing the stack over to kubedos dev; every process keeps running');
        supervisor.detach();
        persist(supervisor.records());
        ended = true;
        releaseLock(home);
        finished('handed-over');
        return;
      }
    }
  };

  supervisor = new Supervisor({
    records,
    detached,
    retryRefused: options.retryRefused,
    onChange: persist,
    onTick: handleRequests,
    log: logger.child({ component: 'supervisor', home }),
  });
  supervisor.add(serverSpec);
  if (state.codecPort) {
    supervisor.add({
      key: 'codec',
      label: 'the codec endpoint',
      argv: [process.execPath, entryPoint('src', 'temporal', 'codec-server.js'), '--port', String(state.codecPort), ...uiOrigins(settings.uiUrl!).flatMap((o) => ['--allow-origin', o])],
      env: { ...process.env, KUBEDOS_HOME: home },
      logFile: f.codecLog,
      marker: CODEC_MARKER,
      stopOrder: 1,
    });
  }
  for (const pool of state.pools!) supervisor.add(workerSpec(pool));
  supervisor.run();

  void done.then(() => client?.connection.close().catch(() => undefined));
  return {
    done,
    stop: async () => {
      if (ended) return;
      await supervisor.stop();
      persist(supervisor.records());
      ended = true;
      writeState(stoppedState(state));
      releaseLock(home);
      finished('stopped');
    },
  };
}

/**
 * Until worker `pid` of `pool` polls its queue (it has probed its tools and connected); a worker
 * that is alive but has not polled after WORKER_READY_MS is counted as running anyway, with a
 * warning (a slow machine), rather than killed.
 */
async function awaitWorkerPolling(client: Client, pool: PoolName, pid: number, isAlive: () => boolean): Promise<void> {
  const deadline = Date.now() + WORKER_READY_MS;
  const identity = new RegExp(`^${pool}@.*:${pid}$`);
  while (isAlive()) {
    const pollers = await activityPollers(client, POOLS[pool].taskQueue).catch(() => []);
    if (pollers.some((p) => identity.test(p.identity))) return;
    if (Date.now() > deadline) {
      logger.warn({ pool, pid }, `worker pool ${pool} has not polled ${POOLS[pool].taskQueue} within ${WORKER_READY_MS / 1000} s of its start; counted as running`);
      return;
    }
    await sleep(500);
  }
}

/** How long a starting worker has to poll its queue before it counts as running anyway. */
const WORKER_READY_MS = 120_000;

/** The daemon's body (stack-daemon.js): supervise until SIGTERM, then stop the stack. */
export async function runStackDaemon(argv: string[]): Promise<void> {
  const i = argv.indexOf('--pools');
  const pools = i >= 0 && argv[i + 1] ? parsePoolList(argv[i + 1]!) : configuredPools();
  let supervision: StackSupervision;
  try {
    supervision = await superviseStack({ mode: 'daemon', pools, retryRefused: argv.includes('--retry') });
  } catch (err) {
    const state = readState(stateDir());
    // Lost a race with another supervisor: nothing to do.
    if (err instanceof ConfigError && liveSupervisor(state)) return;
    if (state && (!state.supervisor || state.supervisor.pid === process.pid || !liveSupervisor(state))) {
      writeState({ ...state, supervisor: undefined, error: { message: (err as Error).message, hint: (err as { hint?: string }).hint } });
    }
    throw err;
  }
  const stop = () => void supervision.stop();
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  await supervision.done;
}

// --- the commands' side ----------------------------------------------------------------------

/** Write a request for the supervisor and wait until it has handled it; false when it died first. */
async function askSupervisor(home: string, supervisor: SupervisorRecord, req: SupervisorRequest, timeoutMs = 30_000): Promise<boolean> {
  const dir = files(home).requests;
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${randomUUID()}.json`);
  writeFileSync(`${file}.tmp`, JSON.stringify(req));
  renameSync(`${file}.tmp`, file);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!existsSync(file)) return true;
    if (!isOurProcess(supervisor.pid, supervisor.marker)) break;
    await sleep(100);
  }
  rmSync(file, { force: true });
  return false;
}

/** Fail early, with the right error, on what the supervisor would only find out in its log. */
async function preflight(home: string, pools: PoolName[]): Promise<void> {
  // The payload keys (generated under the home on first use) before any process that needs them.
  loadCodecKeyring({ home });
  portFromEnv('KUBEDOS_TEMPORAL_PORT');
  portFromEnv('KUBEDOS_UI_PORT');
  await findTemporalBinary();
  entryPoint('src', 'temporal', 'stack-daemon.js');
  entryPoint('src', 'temporal', 'codec-server.js');
  for (const pool of pools) entryPoint('workers', `${pool}.js`);
}

/** Wait until the server serves (and, with `workers`, every pool has settled: running, refused or crashed). */
async function waitUntilServing(home: string, pools: PoolName[], workers: boolean, timeoutMs = 120_000): Promise<void> {
  const f = files(home);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = readState(home);
    if (!liveSupervisor(state)) {
      const why = state?.error?.message ?? logTail(f.supervisorLog, 8);
      throw new TemporalUnavailableError(`the embedded stack of ${home} did not start: ${why}`, state?.error?.hint ?? `see ${f.supervisorLog}`);
    }
    const server = state!.server;
    const settled = (p: PoolName) => {
      const w = state!.workers[p];
      return w !== undefined && w.state !== 'starting' && w.state !== 'waiting';
    };
    if (server?.state === 'running' && (!workers || pools.every(settled))) return;
    if (isCrashLooping(server)) {
      throw new TemporalUnavailableError(
        `the embedded Temporal server of ${home} keeps crashing (${server!.crashes} times in a row, last: ${describeExit(server!.lastExit!)}):\n${logTail(f.serverLog, 8)}`,
        `see ${f.serverLog}; the supervisor keeps restarting it every 30 s`,
      );
    }
    if (Date.now() > deadline) {
      throw new TemporalUnavailableError(`the embedded Temporal server of ${home} did not become ready within ${timeoutMs / 1000} s:\n${logTail(f.serverLog, 8)}`, `see ${f.serverLog}`);
    }
    await sleep(200);
  }
}

/**
 * Start (or find) the embedded stack in the background. Idempotent and cheap when it runs: a
 * command only checks that its supervisor lives (starting another, which adopts what runs, when
 * it does not) and that the server serves. `retry` (an explicit `kubedos stack start`) starts
 * again what refused or backs off.
 */
export async function startStack(options: { pools?: PoolName[]; retry?: boolean } = {}): Promise<StackStatus> {
  const home = stateDir();
  const pools = options.pools ?? configuredPools();
  await preflight(home, pools);
  const state = readState(home);
  const supervisor = liveSupervisor(state);
  let waitForWorkers = false;
  if (supervisor) {
    const missing = pools.filter((p) => !state!.pools?.includes(p));
    if (missing.length || options.retry) {
      waitForWorkers = true;
      if (!(await askSupervisor(home, supervisor, { addPools: missing, retry: options.retry }))) return startStack(options);
      await sleep(300); // a pool just started or retried is 'starting' from the next write on
    }
  } else {
    const f = files(home);
    const argv = [process.execPath, entryPoint('src', 'temporal', 'stack-daemon.js'), '--pools', pools.join(','), ...(options.retry ? ['--retry'] : [])];
    const pid = spawnDaemon(argv, { logFile: f.supervisorLog, detached: true, env: { ...process.env, KUBEDOS_HOME: home } });
    logger.debug({ pid, home }, 'started the stack supervisor');
    // Until it has written itself into stack.json (or lost the race to another one).
    const deadline = Date.now() + 60_000;
    for (;;) {
      const s = readState(home);
      if (liveSupervisor(s) && (s!.supervisor!.pid === pid || !isOurProcess(pid, DAEMON_MARKER))) break;
      if (!isOurProcess(pid, DAEMON_MARKER) && !liveSupervisor(s)) {
        const why = s?.error?.message ?? logTail(f.supervisorLog, 8);
        throw new TemporalUnavailableError(`the embedded stack of ${home} did not start: ${why}`, s?.error?.hint ?? `see ${f.supervisorLog}`);
      }
      if (Date.now() > deadline) throw new TemporalUnavailableError(`the stack supervisor of ${home} did not start`, `see ${f.supervisorLog}`);
      await sleep(100);
    }
    waitForWorkers = true;
  }
  await waitUntilServing(home, pools, waitForWorkers);
  return stackStatus();
}

/**
 * `kubedos dev`: supervise the stack from this process, its new processes tied to it (Ctrl-C
 * stops everything). A background daemon hands its processes over first.
 */
export async function runStackInForeground(pools?: PoolName[]): Promise<{ status: StackStatus; supervision: StackSupervision }> {
  const home = stateDir();
  const wanted = pools ?? configuredPools();
  await preflight(home, wanted);
  const supervisor = liveSupervisor(readState(home));
  if (supervisor?.mode === 'foreground') throw new ConfigError(`kubedos dev already runs for ${home} (pid ${supervisor.pid})`, 'use that one, or stop it first');
  if (supervisor) {
    await askSupervisor(home, supervisor, { handover: true });
    const deadline = Date.now() + 30_000;
    while (isOurProcess(supervisor.pid, supervisor.marker) && Date.now() < deadline) await sleep(100);
  }
  const supervision = await superviseStack({ mode: 'foreground', pools: wanted, retryRefused: true });
  try {
    await waitUntilServing(home, wanted, true);
  } catch (err) {
    await supervision.stop();
    throw err;
  }
  return { status: stackStatus(), supervision };
}

function processStatus(record: ProcessRecord | undefined, marker: string, log: string): ProcessStatus {
  const running = alive(record, marker);
  const recorded = record?.state ?? 'stopped';
  const state: ProcessStatus['state'] = running ? (recorded === 'starting' ? 'starting' : 'running') : recorded === 'running' || recorded === 'starting' ? 'exited' : recorded;
  const crashLoop = isCrashLooping(record);
  return {
    pid: record?.pid,
    running,
    state,
    restarts: record?.restarts ?? 0,
    crashLoop,
    lastExit: record?.lastExit,
    log,
    reason: running && !crashLoop ? undefined : (record?.reason ?? (state === 'stopped' ? undefined : logTail(log, 3))) || undefined,
  };
}

function ago(iso: string): string {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 120 ? `${s} s ago` : `${Math.round(s / 60)} min ago`;
}

/** What is running for this state directory. */
export function stackStatus(): StackStatus {
  const home = stateDir();
  const f = files(home);
  const state = readState(home);
  const port = state?.port ?? DEFAULT_PORT;
  const uiPort = state?.uiPort ?? port + 1000;
  const settings = embeddedSettings({ port, uiPort });
  const server = processStatus(state?.server, SERVER_MARKER, f.serverLog);
  const codec = state?.codecPort ? processStatus(state.codec, CODEC_MARKER, f.codecLog) : undefined;
  const pools: PoolStatus[] = POOL_NAMES.filter((p) => state?.workers[p]).map((pool) => ({
    pool,
    taskQueue: POOLS[pool].taskQueue,
    ...processStatus(state!.workers[pool], workerMarker(pool), f.workerLog(pool)),
  }));
  const sup = state?.supervisor;
  const supervisorRunning = Boolean(liveSupervisor(state));
  const warnings: string[] = [];
  const anyRunning = server.running || codec?.running || pools.some((p) => p.running);
  if (anyRunning && !supervisorRunning) warnings.push(`nothing supervises the embedded stack of ${home}: its supervisor is not running (the next kubedos command starts it again; see ${f.supervisorLog})`);
  const loops: [string, ProcessStatus][] = [['the Temporal dev server', server], ...(codec ? [['the codec endpoint', codec] as [string, ProcessStatus]] : []), ...pools.map((p) => [`worker pool ${p.pool}`, p] as [string, ProcessStatus])];
  for (const [label, p] of loops) {
    if (!p.crashLoop) continue;
    const last = p.lastExit ? `last: ${describeExit(p.lastExit)} ${ago(p.lastExit.at)}` : '';
    warnings.push(`${label} is crash-looping (${p.restarts} restarts; ${last}); restarted with backoff; log: ${p.log}`);
  }
  return {
    home,
    address: settings.address,
    uiUrl: settings.uiUrl!,
    temporalVersion: state?.temporalVersion,
    serverPid: state?.server?.pid,
    serverRunning: server.running,
    server,
    codecEndpoint: state?.codecPort ? codecUrl(state.codecPort) : undefined,
    codecRunning: Boolean(codec?.running),
    codec,
    supervisor: sup && { pid: sup.pid, running: supervisorRunning, mode: sup.mode, log: f.supervisorLog },
    pools,
    warnings,
  };
}

/** Stop the supervisor (which stops every worker, the codec endpoint, then the server), and anything it left. The SQLite database stays. */
export async function stopStack(): Promise<StackStatus> {
  const home = stateDir();
  let state = readState(home);
  if (!state) return stackStatus();
  const status = stackStatus();
  const supervisor = liveSupervisor(state);
  if (supervisor) {
    process.kill(supervisor.pid, 'SIGTERM');
    const deadline = Date.now() + 60_000;
    while (isOurProcess(supervisor.pid, supervisor.marker) && Date.now() < deadline) await sleep(100);
    if (isOurProcess(supervisor.pid, supervisor.marker)) process.kill(supervisor.pid, 'SIGKILL');
    state = readState(home) ?? state;
  }
  // What no supervisor stopped (it was gone, or died on the way).
  const leftover = state;
  await Promise.all(POOL_NAMES.map(async (p) => {
    const pid = leftover.workers[p]?.pid;
    if (pid) await stopProcess(pid, workerMarker(p));
  }));
  if (state.codec?.pid) await stopProcess(state.codec.pid, CODEC_MARKER);
  if (state.server?.pid) await stopProcess(state.server.pid, SERVER_MARKER, 15_000);
  writeState(stoppedState(state));
  rmSync(files(home).lock, { force: true });
  const stopped = (p: ProcessStatus): ProcessStatus => ({ ...p, running: false, state: 'stopped', reason: undefined });
  return {
    ...status,
    serverRunning: false,
    codecRunning: false,
    server: stopped(status.server),
    codec: status.codec && stopped(status.codec),
    supervisor: status.supervisor && { ...status.supervisor, running: false },
    pools: status.pools.map((p) => ({ ...p, ...stopped(p) })),
    warnings: [],
  };
}

/** Log file of a pool's worker (shown when it refused to start). */
export function workerLogFile(pool: PoolName): string {
  return files(stateDir()).workerLog(pool);
}
