/**
 * A production-shaped Temporal cluster for the tests: the real server (temporal-server v1.32.1,
 * built from the Go module proxy by scripts/setup-temporal-server) on Debian's PostgreSQL 15,
 * frontend, history, matching and worker as four processes, dynamic config from the same file
 * the compose stack mounts (deploy/temporal/dynamicconfig/kubedos.yaml, validated first).
 *
 * Unlike the dev server, nothing is made for you: no namespace but the server's own, no search
 * attributes — which is what `kubedos cluster init` is tested against.
 *
 * Networking: every service binds one address, a bridge (`kdcl-<id>`) with a private /24 this
 * module creates, so test "hosts" in network namespaces reach the frontend (and the S3 server)
 * through it while the tests themselves connect the same way. PostgreSQL stays on loopback.
 *
 * Started at most once per test run and shared by the test files that use it (`sharedCluster`):
 * the first caller starts it under $KUBEDOS_TEST_DIR/cluster, later ones (other jest workers)
 * attach through cluster.json; the run's global teardown stops it (`stopSharedCluster`).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync, chownSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import { logTail, spawnDaemon, stopProcess, isOurProcess } from '../../src/exec/daemon';
import { freePort, portIsFree } from '../../src/exec/ports';
import { runTool } from '../../src/exec/run';
import { waitForServer } from '../../src/temporal/dev-server';
import { accepts } from './wait-for-port';

const ROOT = path.resolve(__dirname, '..', '..');
export const TEMPORAL_SERVER = path.join(ROOT, '.tools', 'bin', 'temporal-server');
export const TEMPORAL_SQL_TOOL = path.join(ROOT, '.tools', 'bin', 'temporal-sql-tool');
/** The schema of the server's version, copied out of the module cache by scripts/setup-temporal-server. */
export const SCHEMA_DIR = path.join(ROOT, '.tools', 'share', 'temporal-server', 'schema', 'postgresql', 'v12');
/** The compose stack's dynamic config: what the dev server is given for KubeDos, as a file. */
export const DYNAMIC_CONFIG = path.join(ROOT, 'deploy', 'temporal', 'dynamicconfig', 'kubedos.yaml');

export const SERVICES = ['frontend', 'history', 'matching', 'worker'] as const;
export type ServiceName = (typeof SERVICES)[number];

export interface ServiceProcess {
  pid: number;
  configFile: string;
  logFile: string;
}

export interface ClusterInfo {
  dir: string;
  /** host:port of the frontend, for TEMPORAL_ADDRESS. */
  address: string;
  /** The address every service binds (the bridge's, or 127.0.0.1 without one). */
  host: string;
  /** The bridge the cluster listens on: network namespaces attach to it. */
  bridge?: { name: string; cidr: string; prefix: string };
  postgres: { dataDir: string; port: number; logFile: string };
  services: Record<ServiceName, ServiceProcess>;
  startedMs: number;
}

const stateFile = (dir: string) => path.join(dir, 'cluster.json');

function writeInfo(info: ClusterInfo): void {
  writeFileSync(`${stateFile(info.dir)}.tmp`, `${JSON.stringify(info, null, 2)}\n`);
  renameSync(`${stateFile(info.dir)}.tmp`, stateFile(info.dir));
}

export function readInfo(dir: string): ClusterInfo | undefined {
  try {
    return JSON.parse(readFileSync(stateFile(dir), 'utf8')) as ClusterInfo;
  } catch {
    return undefined;
  }
}

const marker = (info: Pick<ClusterInfo, 'dir'>, service: ServiceName) => path.join(info.dir, `${service}.yaml`);

// --- networking: one bridge on a private /24 nothing else uses ---

async function pickSubnet(): Promise<string> {
  const { stdout } = await runTool(['ip', '-4', '-o', 'addr', 'show']);
  const { stdout: routes } = await runTool(['ip', '-4', 'route', 'show']);
  for (let i = 0; i < 50; i++) {
    const prefix = `10.${200 + Math.floor(Math.random() * 50)}.${Math.floor(Math.random() * 250) + 1}`;
    if (!stdout.includes(` ${prefix}.`) && !routes.includes(`${prefix}.0/`)) return prefix;
  }
  throw new Error('no free 10.x.y.0/24 for the cluster bridge');
}

async function createBridge(id: string): Promise<NonNullable<ClusterInfo['bridge']>> {
  const name = `kdcl-${id}`;
  const prefix = await pickSubnet();
  await runTool(['ip', 'link', 'add', name, 'type', 'bridge']);
  await runTool(['ip', 'addr', 'add', `${prefix}.1/24`, 'dev', name]);
  await runTool(['ip', 'link', 'set', name, 'up']);
  return { name, cidr: `${prefix}.1/24`, prefix };
}

async function deleteBridge(bridge: ClusterInfo['bridge']): Promise<void> {
  if (bridge) await runTool(['ip', 'link', 'del', bridge.name]).catch(() => undefined);
}

// --- PostgreSQL 15, Debian's, as a plain process owned by the postgres user ---

function pgBin(tool: string): string {
  const versions = existsSync('/usr/lib/postgresql') ? readdirSync('/usr/lib/postgresql').sort() : [];
  for (const v of versions.reverse()) {
    const bin = path.join('/usr/lib/postgresql', v, 'bin', tool);
    if (existsSync(bin)) return bin;
  }
  throw new Error(`${tool} not found under /usr/lib/postgresql/*/bin: install Debian's postgresql (scripts/setup does)`);
}

const asPostgres = (argv: string[]) => ['runuser', '-u', 'postgres', '--', ...argv];

async function startPostgres(): Promise<ClusterInfo['postgres']> {
  // Its own directory owned by postgres: the run's temp dir is root's, mode 0700.
  const pgDir = mkdtempSync(path.join(os.tmpdir(), 'kubedos-pg-'));
  const { uid, gid } = postgresIds();
  chownSync(pgDir, uid, gid);
  const dataDir = path.join(pgDir, 'data');
  const logFile = path.join(pgDir, 'postgres.log');
  const port = await freePort();
  await runTool(asPostgres([pgBin('initdb'), '-D', dataDir, '-U', 'temporal', '--auth=trust', '-E', 'UTF8', '--no-instructions']), { timeoutMs: 120_000 });
  // Loopback only, the socket in its own directory, and no fsync: a test database need not
  // survive a power cut (the server's durability under process kills is what is tested).
  const conf = [
    `listen_addresses = '127.0.0.1'`,
    `port = ${port}`,
    `unix_socket_directories = '${pgDir}'`,
    'max_connections = 200',
    'fsync = off',
    'synchronous_commit = off',
    'full_page_writes = off',
    'shared_buffers = 64MB',
  ].join('\n');
  writeFileSync(path.join(dataDir, 'postgresql.auto.conf'), `${conf}\n`);
  chownSync(path.join(dataDir, 'postgresql.auto.conf'), uid, gid);
  await runTool(asPostgres([pgBin('pg_ctl'), '-D', dataDir, '-l', logFile, '-w', '-t', '120', 'start']), { timeoutMs: 150_000 });
  return { dataDir, port, logFile };
}

function postgresIds(): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error('no postgres user: install Debian\'s postgresql (scripts/setup does)');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

async function stopPostgres(pg: ClusterInfo['postgres']): Promise<void> {
  if (!existsSync(pg.dataDir)) return;
  await runTool(asPostgres([pgBin('pg_ctl'), '-D', pg.dataDir, '-m', 'immediate', '-w', '-t', '60', 'stop']), { timeoutMs: 90_000 }).catch(() => undefined);
  rmSync(path.dirname(pg.dataDir), { recursive: true, force: true });
}

// --- schema ---

async function loadSchema(pgPort: number): Promise<void> {
  const sql = (db: string, ...args: string[]) =>
    runTool([TEMPORAL_SQL_TOOL, '--plugin', 'postgres12', '--ep', '127.0.0.1', '-p', String(pgPort), '-u', 'temporal', '--pw', 'temporal', '--db', db, ...args], { timeoutMs: 180_000 });
  for (const [db, schema] of [['temporal', 'temporal'], ['temporal_visibility', 'visibility']] as const) {
    await sql(db, 'create-database');
    await sql(db, 'setup-schema', '-v', '0.0');
    await sql(db, 'update-schema', '-d', path.join(SCHEMA_DIR, schema, 'versioned'));
  }
}

// --- the four services ---

type Ports = Record<ServiceName, { grpc: number; membership: number; metrics: number }> & { http: number };

/**
 * Free ports below 32768: the SQL schema stores a member's RPC port as a SMALLINT (cluster_membership),
 * so a port from the kernel's ephemeral range makes every service exit at start. Never the
 * well-known ports another stack on this machine may be using (7233, 8000).
 */
async function distinctFreePorts(host: string, n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) {
    const p = 20_000 + Math.floor(Math.random() * 12_000);
    if (p !== 7233 && p !== 8000 && !ports.has(p) && (await portIsFree(p, host)) && (await portIsFree(p, '127.0.0.1'))) ports.add(p);
  }
  return [...ports];
}

function serviceConfig(service: ServiceName, host: string, ports: Ports, pgPort: number): string {
  const store = (database: string, maxConns: number) => ({
    sql: { pluginName: 'postgres12', databaseName: database, connectAddr: `127.0.0.1:${pgPort}`, connectProtocol: 'tcp', user: 'temporal', password: 'temporal', maxConns, maxIdleConns: maxConns, maxConnLifetime: '1h' },
  });
  const rpc = (s: ServiceName) => ({ grpcPort: ports[s].grpc, membershipPort: ports[s].membership, bindOnIP: host, ...(s === 'frontend' ? { httpPort: ports.http } : {}) });
  const config = {
    log: { stdout: true, level: 'warn', format: 'json' },
    persistence: {
      defaultStore: 'postgres-default',
      visibilityStore: 'postgres-visibility',
      numHistoryShards: 4,
      datastores: { 'postgres-default': store('temporal', 20), 'postgres-visibility': store('temporal_visibility', 4) },
    },
    global: {
      membership: { maxJoinDuration: '30s', broadcastAddress: host },
      // The only setting that differs between the four processes (one metrics listener each).
      metrics: { prometheus: { framework: 'tally', timerType: 'histogram', listenAddress: `127.0.0.1:${ports[service].metrics}` } },
    },
    services: Object.fromEntries(SERVICES.map((s) => [s, { rpc: rpc(s) }])),
    clusterMetadata: {
      enableGlobalNamespace: false,
      failoverVersionIncrement: 10,
      masterClusterName: 'active',
      currentClusterName: 'active',
      clusterInformation: { active: { enabled: true, initialFailoverVersion: 1, rpcName: 'frontend', rpcAddress: `${host}:${ports.frontend.grpc}`, httpAddress: `${host}:${ports.http}` } },
    },
    dcRedirectionPolicy: { policy: 'noop' },
    publicClient: { hostPort: `${host}:${ports.frontend.grpc}` },
    dynamicConfigClient: { filepath: DYNAMIC_CONFIG, pollInterval: '10s' },
  };
  return `# Generated by test/support/temporal-cluster.ts (the development-postgres12 layout).\n${stringify(config)}`;
}

const alive = (info: ClusterInfo, s: ServiceName) => Boolean(info.services[s]) && isOurProcess(info.services[s].pid, info.services[s].configFile);

async function waitForListening(host: string, port: number, isAlive: () => boolean, timeoutMs: number): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await sleep(200)) {
    if (!isAlive()) throw new Error(`a Temporal service exited before listening on ${host}:${port}`);
    if (await accepts(host, port)) return;
  }
  throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`);
}

function startService(info: ClusterInfo, service: ServiceName): ServiceProcess {
  const configFile = marker(info, service);
  const logFile = path.join(info.dir, 'logs', `${service}.log`);
  const pid = spawnDaemon([TEMPORAL_SERVER, '--config-file', configFile, '--allow-no-auth', 'start', '--service', service], {
    logFile,
    detached: false,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: info.dir },
  });
  return { pid, configFile, logFile };
}

/** Stop one service (SIGTERM, or SIGKILL with `kill`) and start it again; resolves when the frontend answers again. */
export async function restartService(info: ClusterInfo, service: ServiceName, options: { kill?: boolean; downMs?: number } = {}): Promise<ClusterInfo> {
  const current = readInfo(info.dir) ?? info;
  const old = current.services[service];
  if (options.kill) {
    try {
      process.kill(old.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
    while (isOurProcess(old.pid, old.configFile)) await sleep(50);
  } else {
    await stopProcess(old.pid, old.configFile, 30_000);
  }
  if (options.downMs) await sleep(options.downMs);
  current.services[service] = startService(current, service);
  writeInfo(current);
  await waitForServer(current.address, 'temporal-system', 120_000);
  return current;
}

/**
 * Validate a dynamic config file the way the server reads it: unknown keys and values of the
 * wrong type are problems (the tool prints them as warnings and still exits 0). Returns them.
 */
export async function dynamicConfigProblems(file = DYNAMIC_CONFIG): Promise<string[]> {
  const { stdout, stderr } = await runTool([TEMPORAL_SERVER, 'validate-dynamic-config', file], { timeoutMs: 60_000 });
  return `${stdout}${stderr}`.split('\n').map((l) => l.trim()).filter((l) => l && l !== file);
}

async function validateDynamicConfig(): Promise<void> {
  const problems = await dynamicConfigProblems();
  if (problems.length) throw new Error(`${DYNAMIC_CONFIG}: temporal-server validate-dynamic-config:\n${problems.join('\n')}`);
}

/** Start the whole cluster under `dir`. */
export async function startTemporalCluster(dir: string, options: { bridge?: boolean } = {}): Promise<ClusterInfo> {
  for (const tool of [TEMPORAL_SERVER, TEMPORAL_SQL_TOOL]) {
    if (!existsSync(tool)) throw new Error(`${tool} is missing: run scripts/setup --tests (it builds temporal-server v1.32.1 from the Go module proxy, ~10 min cold)`);
  }
  const started = Date.now();
  mkdirSync(path.join(dir, 'logs'), { recursive: true });
  await validateDynamicConfig();
  const id = Math.random().toString(16).slice(2, 8);
  const bridge = options.bridge === false ? undefined : await createBridge(id);
  const host = bridge ? `${bridge.prefix}.1` : '127.0.0.1';
  let postgres: ClusterInfo['postgres'] | undefined;
  try {
    postgres = await startPostgres();
    await loadSchema(postgres.port);
    const list = await distinctFreePorts(host, 13);
    const ports = { http: list[12]! } as Ports;
    SERVICES.forEach((s, i) => (ports[s] = { grpc: list[i * 3]!, membership: list[i * 3 + 1]!, metrics: list[i * 3 + 2]! }));
    const info: ClusterInfo = { dir, address: `${host}:${ports.frontend.grpc}`, host, bridge, postgres, services: {} as ClusterInfo['services'], startedMs: 0 };
    for (const s of SERVICES) writeFileSync(marker(info, s), serviceConfig(s, host, ports, postgres.port));
    // History first, alone: the first service to start writes the cluster metadata record, and
    // several doing it at once race (the losers exit with "Failed to apply cluster metadata").
    info.services.history = startService(info, 'history');
    writeInfo(info);
    await waitForListening(host, ports.history.membership, () => alive(info, 'history'), 120_000);
    for (const s of SERVICES) if (s !== 'history') info.services[s] = startService(info, s);
    writeInfo(info);
    // The frontend answers for its own system namespace once history and matching have joined.
    await waitForServer(info.address, 'temporal-system', 180_000, () => SERVICES.every((s) => alive(info, s))).catch((err) => {
      const logs = SERVICES.map((s) => `--- ${s}${alive(info, s) ? '' : ' (exited)'}\n${logTail(info.services[s].logFile, 3).slice(0, 2000)}`).join('\n');
      throw new Error(`${(err as Error).message}\n${logs}`);
    });
    info.startedMs = Date.now() - started;
    writeInfo(info);
    return info;
  } catch (err) {
    const partial = readInfo(dir);
    if (partial) await stopTemporalCluster(partial);
    else {
      if (postgres) await stopPostgres(postgres);
      await deleteBridge(bridge);
    }
    throw err;
  }
}

/** Stop every process of the cluster, PostgreSQL, and the bridge. */
export async function stopTemporalCluster(info: ClusterInfo): Promise<void> {
  // Workers of the server first (frontend last: it is what clients see).
  for (const s of ['worker', 'matching', 'history', 'frontend'] as const) {
    const p = info.services[s];
    if (p) await stopProcess(p.pid, p.configFile, 15_000);
  }
  await stopPostgres(info.postgres);
  await deleteBridge(info.bridge);
}

// --- one cluster per test run ---

function runDir(): string {
  const dir = process.env.KUBEDOS_TEST_DIR;
  if (!dir) throw new Error('KUBEDOS_TEST_DIR is not set: run the tests through jest (global-setup makes it)');
  return path.join(dir, 'cluster');
}

async function withRunLock<T>(lockDir: string, fn: () => Promise<T>): Promise<T> {
  for (;;) {
    try {
      mkdirSync(lockDir);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      await sleep(500);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lockDir, { recursive: true, force: true });
  }
}

/** The run's cluster: started by the first test file that asks, attached to by the others. */
export async function sharedCluster(): Promise<ClusterInfo> {
  const dir = runDir();
  mkdirSync(path.dirname(dir), { recursive: true });
  return withRunLock(`${dir}.lock`, async () => {
    const existing = readInfo(dir);
    if (existing && SERVICES.every((s) => isOurProcess(existing.services[s].pid, existing.services[s].configFile))) return existing;
    if (existing) await stopTemporalCluster(existing);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const info = await startTemporalCluster(dir);
    console.log(`production-shaped Temporal cluster (PostgreSQL, 4 services) at ${info.address}: up in ${info.startedMs} ms`);
    return info;
  });
}

/** Global teardown: stop the run's cluster if a test file started one. */
export async function stopSharedCluster(): Promise<void> {
  const dir = process.env.KUBEDOS_TEST_DIR && path.join(process.env.KUBEDOS_TEST_DIR, 'cluster');
  const info = dir ? readInfo(dir) : undefined;
  if (info) await stopTemporalCluster(info);
}
