/**
 * The embedded stack under the state directory: the real Temporal dev server, one worker
 * process per pool, and the codec endpoint the Web UI decrypts payloads through. Its pids and
 * ports live in `$KUBEDOS_HOME/stack.json`, so any later command finds it again, and two stacks
 * with different KUBEDOS_HOME run side by side.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { env } from '../config/env';
import { projectRoot, stateDir, stateDirIsExplicit } from '../config/paths';
import { ConfigError, TemporalUnavailableError } from '../errors';
import { isOurProcess, logTail, spawnDaemon, stopProcess } from '../exec/daemon';
import { freePort, portIsFree } from '../exec/ports';
import { logger } from '../log';
import { POOL_NAMES, parsePoolList, type PoolName } from '../pools/pools';
import { loadCodecKeyring } from './codec';
import { uiOrigins } from './codec-server';
import type { ConnectionSettings } from './connection';
import { devServerArgv, findTemporalBinary, temporalVersion, waitForServer } from './dev-server';

const DEFAULT_PORT = 7233;
const IP = '127.0.0.1';
const NAMESPACE = 'default';
/** Exit code a worker uses when it refuses to serve its queue (missing tools). */
export const WORKER_REFUSED_EXIT = 78;

export interface StackState {
  home: string;
  port: number;
  uiPort: number;
  temporalVersion?: string;
  server?: { pid: number; startedAt: string };
  workers: Partial<Record<PoolName, { pid: number; startedAt: string }>>;
  /** Port of the codec endpoint; the server's UI is pointed at it when the server starts. */
  codecPort?: number;
  codec?: { pid: number; startedAt: string };
}

export interface PoolStatus {
  pool: PoolName;
  pid?: number;
  running: boolean;
  /** Last log lines when the worker is not running (why it refused or crashed). */
  reason?: string;
}

export interface StackStatus {
  home: string;
  address: string;
  uiUrl: string;
  temporalVersion?: string;
  serverPid?: number;
  serverRunning: boolean;
  /** Remote codec endpoint (for the UI, and `temporal --codec-endpoint`), when the stack has one. */
  codecEndpoint?: string;
  codecRunning: boolean;
  pools: PoolStatus[];
}

const files = (home: string) => ({
  state: path.join(home, 'stack.json'),
  db: path.join(home, 'temporal', 'temporal.db'),
  serverLog: path.join(home, 'logs', 'temporal.log'),
  workerLog: (pool: PoolName) => path.join(home, 'logs', `worker-${pool}.log`),
  codecLog: path.join(home, 'logs', 'codec-server.log'),
});

function readState(home: string): StackState | undefined {
  try {
    return JSON.parse(readFileSync(files(home).state, 'utf8')) as StackState;
  } catch {
    return undefined;
  }
}

function writeState(state: StackState): void {
  const file = files(state.home).state;
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(`${file}.tmp`, `${JSON.stringify(state, null, 2)}\n`);
  renameSync(`${file}.tmp`, file);
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
const codecUrl = (port: number) => `http://${IP}:${port}`;

/** The codec endpoint keeps its port across restarts (the UI of a running server points at it). */
async function chooseCodecPort(previous?: StackState): Promise<number> {
  if (previous?.codecPort && (await portIsFree(previous.codecPort, IP))) return previous.codecPort;
  return freePort(IP);
}

/** Start the codec endpoint daemon on the state's port, answering the UI's origins. */
function startCodecServer(state: StackState, detached: boolean): void {
  const entry = path.join(projectRoot(), 'dist', 'src', 'temporal', 'codec-server.js');
  if (!existsSync(entry)) {
    throw new TemporalUnavailableError(`codec endpoint ${entry} is missing`, 'run scripts/setup (it compiles the project)');
  }
  const origins = uiOrigins(embeddedSettings(state).uiUrl!).flatMap((o) => ['--allow-origin', o]);
  const pid = spawnDaemon([process.execPath, entry, '--port', String(state.codecPort), ...origins], {
    logFile: files(state.home).codecLog,
    detached,
    env: { ...process.env, KUBEDOS_HOME: state.home },
  });
  state.codec = { pid, startedAt: new Date().toISOString() };
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

function serverAlive(state?: StackState): boolean {
  return Boolean(state?.server && isOurProcess(state.server.pid, SERVER_MARKER));
}

function workerEntry(pool: PoolName): string {
  const entry = path.join(projectRoot(), 'dist', 'workers', `${pool}.js`);
  if (!existsSync(entry)) {
    throw new TemporalUnavailableError(`worker entry point ${entry} is missing`, 'run scripts/setup (it compiles the project)');
  }
  return entry;
}

function startWorker(state: StackState, pool: PoolName, detached: boolean): void {
  const pid = spawnDaemon([process.execPath, workerEntry(pool)], {
    logFile: files(state.home).workerLog(pool),
    detached,
    env: { ...process.env, KUBEDOS_HOME: state.home, TEMPORAL_ADDRESS: `${IP}:${state.port}`, TEMPORAL_NAMESPACE: NAMESPACE },
  });
  state.workers[pool] = { pid, startedAt: new Date().toISOString() };
}

/** Give freshly started workers a moment to probe; those that exit have refused or crashed. */
async function settleWorkers(state: StackState, pools: PoolName[], ms = 4_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    await sleep(200);
    if (pools.every((p) => !state.workers[p] || !isOurProcess(state.workers[p]!.pid, workerMarker(p)))) return;
  }
}

/**
 * Start (or find) the embedded stack. Idempotent: a running server is reused and only dead
 * pools are restarted. `detached: false` ties every process to the caller (kubedos dev).
 */
export async function startStack(options: { detached: boolean; pools?: PoolName[] }): Promise<StackStatus> {
  const home = stateDir();
  const previous = readState(home);
  const pools = options.pools ?? configuredPools();
  // The payload keys (generated under the home on first use) before any process that needs them.
  loadCodecKeyring({ home });
  let state: StackState;

  if (previous && serverAlive(previous)) {
    state = previous;
  } else {
    // Workers left over from a crashed stack belong to a server that is gone: stop them first.
    await stopWorkers(previous);
    if (previous?.codec) await stopProcess(previous.codec.pid, CODEC_MARKER);
    const { port, uiPort } = await choosePorts(home, previous);
    const codecPort = await chooseCodecPort(previous);
    const bin = await findTemporalBinary();
    state = { home, port, uiPort, codecPort, temporalVersion: await temporalVersion(bin), workers: {} };
    mkdirSync(path.dirname(files(home).db), { recursive: true });
    const argv = devServerArgv(bin, {
      ip: IP, port, uiPort, dbFile: files(home).db, namespace: NAMESPACE, headless: process.env.KUBEDOS_HEADLESS === '1', codecEndpoint: codecUrl(codecPort),
    });
    const pid = spawnDaemon(argv, { logFile: files(home).serverLog, detached: options.detached });
    state.server = { pid, startedAt: new Date().toISOString() };
    writeState(state);
    logger.info({ pid, port, uiPort, home }, 'started the embedded Temporal dev server');
    await waitForServer(`${IP}:${port}`, NAMESPACE, 60_000, () => isOurProcess(pid, SERVER_MARKER)).catch((err) => {
      throw new TemporalUnavailableError(`${(err as Error).message}\n${logTail(files(home).serverLog)}`, (err as TemporalUnavailableError).hint);
    });
  }

  // A server started before the stack had a codec endpoint has no codecPort: nothing to serve.
  if (state.codecPort && !(state.codec && isOurProcess(state.codec.pid, CODEC_MARKER))) startCodecServer(state, options.detached);

  const started: PoolName[] = [];
  for (const pool of pools) {
    const current = state.workers[pool];
    if (current && isOurProcess(current.pid, workerMarker(pool))) continue;
    startWorker(state, pool, options.detached);
    started.push(pool);
  }
  writeState(state);
  if (started.length) await settleWorkers(state, started);
  return stackStatus();
}

/** What is running for this state directory. */
export function stackStatus(): StackStatus {
  const home = stateDir();
  const state = readState(home);
  const port = state?.port ?? DEFAULT_PORT;
  const uiPort = state?.uiPort ?? port + 1000;
  const settings = embeddedSettings({ port, uiPort });
  const pools: PoolStatus[] = POOL_NAMES.filter((p) => state?.workers[p]).map((pool) => {
    const pid = state!.workers[pool]!.pid;
    const running = isOurProcess(pid, workerMarker(pool));
    return { pool, pid, running, reason: running ? undefined : logTail(files(home).workerLog(pool), 3) };
  });
  return {
    home,
    address: settings.address,
    uiUrl: settings.uiUrl!,
    temporalVersion: state?.temporalVersion,
    serverPid: state?.server?.pid,
    serverRunning: serverAlive(state),
    codecEndpoint: state?.codecPort ? codecUrl(state.codecPort) : undefined,
    codecRunning: Boolean(state?.codec && isOurProcess(state.codec.pid, CODEC_MARKER)),
    pools,
  };
}

async function stopWorkers(state?: StackState): Promise<void> {
  await Promise.all(
    POOL_NAMES.map(async (pool) => {
      const w = state?.workers[pool];
      if (w) await stopProcess(w.pid, workerMarker(pool));
    }),
  );
}

/** Stop every worker, then the server. The SQLite database stays. */
export async function stopStack(): Promise<StackStatus> {
  const home = stateDir();
  const state = readState(home);
  if (!state) return stackStatus();
  await stopWorkers(state);
  if (state.codec) await stopProcess(state.codec.pid, CODEC_MARKER);
  if (state.server) await stopProcess(state.server.pid, SERVER_MARKER, 15_000);
  const status = stackStatus();
  writeState({ ...state, server: undefined, workers: {}, codec: undefined });
  return { ...status, serverRunning: false, codecRunning: false, pools: status.pools.map((p) => ({ ...p, running: false, reason: undefined })) };
}

/** Log file of a pool's worker (shown when it refused to start). */
export function workerLogFile(pool: PoolName): string {
  return files(stateDir()).workerLog(pool);
}
