/**
 * Shared body of every pool's entry point: probe, refuse the queue when something is missing,
 * otherwise connect and poll until SIGINT/SIGTERM.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { artifactsFromStore, createDeployActivities } from '../activities/deploy';
import { createProbeActivities } from '../activities/probe';
import { stateDir } from '../src/config/paths';
import { probePool } from '../src/exec/probe';
import { createSshProbe } from '../src/health/ssh-probe';
import { logger } from '../src/log';
import { POOLS, type PoolName } from '../src/pools/pools';
import { configuredStore } from '../src/store/default';
import type { ArtifactStore } from '../src/store/store';
import { kubedosFailureInterceptors } from '../src/temporal/activity-failures';
import { ClusterNotReadyError } from '../src/errors';
import { ensureClusterReady } from '../src/temporal/cluster-bootstrap';
import { codecDataConverter } from '../src/temporal/codec';
import { externalSettings, sdkTlsOption } from '../src/temporal/connection';
import { WORKER_REFUSED_EXIT } from '../src/temporal/stack';
import { targetsOfPool } from '../src/targets';

export type ActivityMap = Record<string, (...args: never[]) => Promise<unknown>>;

/** A further task queue the pool's process serves, with its own activities (e.g. a build host's publish queue). */
export interface ExtraQueue {
  taskQueue: string;
  activities: ActivityMap;
}

/** Workflow code for the control pool: the prebuilt bundle when present, else bundle from source. */
function workflowSource(): Pick<WorkerOptions, 'workflowBundle' | 'workflowsPath'> {
  const bundle = path.resolve(__dirname, '..', 'workflow-bundle.js');
  if (existsSync(bundle)) return { workflowBundle: { codePath: bundle } };
  return { workflowsPath: require.resolve('../workflows') };
}

/**
 * Build the worker for a pool against an existing connection (also used by tests). Payloads go
 * through the payload codec (keys from KUBEDOS_CODEC_KEY / _FILE / the state directory) unless
 * `overrides.dataConverter` says otherwise.
 */
export async function createPoolWorker(
  pool: PoolName,
  connection: NativeConnection,
  namespace: string,
  activities: ActivityMap = {},
  overrides: Partial<WorkerOptions> = {},
): Promise<Worker> {
  const def = POOLS[pool];
  return Worker.create({
    connection,
    namespace,
    taskQueue: def.taskQueue,
    identity: `${pool}@${require('node:os').hostname()}:${process.pid}`,
    activities: { ...createProbeActivities({ pool, probe: probePool }), ...activities },
    ...(def.runsWorkflows ? workflowSource() : {}),
    ...(overrides.dataConverter ? {} : { dataConverter: codecDataConverter() }),
    ...overrides,
    // Typed errors keep their class, retryability and hint across the boundary (see activity-failures.ts).
    interceptors: { ...overrides.interceptors, activity: [kubedosFailureInterceptors, ...(overrides.interceptors?.activity ?? [])] },
  });
}

/** Entry point body: exits 78 (EX_CONFIG) when the host lacks what the pool needs. */
export async function runPool(pool: PoolName, activities: ActivityMap = {}, extraQueues: readonly ExtraQueue[] = []): Promise<void> {
  const log = logger.child({ pool });
  const probe = await probePool(pool);
  if (!probe.ok) {
    log.error({ missing: probe.missing }, `refusing to poll ${probe.taskQueue}: ${probe.missing.join('; ')}`);
    process.exit(WORKER_REFUSED_EXIT);
  }
  const settings = externalSettings();
  if (!settings) {
    log.error({}, 'TEMPORAL_ADDRESS is not set; workers connect to a running server (kubedos dev starts one)');
    process.exit(WORKER_REFUSED_EXIT);
  }
  let dataConverter: WorkerOptions['dataConverter'];
  try {
    dataConverter = codecDataConverter();
  } catch (err) {
    log.error({ hint: (err as { hint?: string }).hint }, `refusing to poll ${probe.taskQueue}: ${(err as Error).message}`);
    process.exit(WORKER_REFUSED_EXIT);
  }
  const connection = await NativeConnection.connect({
    address: settings.address,
    tls: sdkTlsOption(settings),
    apiKey: settings.apiKey,
  });
  try {
    // A cluster KubeDos did not start: its namespace and search attributes first (registered when
    // the server allows; otherwise refuse, saying which commands make it ready).
    await ensureClusterReady(connection, settings);
  } catch (err) {
    await connection.close();
    if (!(err instanceof ClusterNotReadyError)) throw err;
    log.error({ hint: err.hint }, `refusing to poll ${probe.taskQueue}: ${err.message}`);
    process.exit(WORKER_REFUSED_EXIT);
  }
  try {
    const worker = await createPoolWorker(pool, connection, settings.namespace, activities, { dataConverter });
    const extra = await Promise.all(extraQueues.map((q) => createPoolWorker(pool, connection, settings.namespace, q.activities, { dataConverter, taskQueue: q.taskQueue })));
    log.info({ taskQueue: POOLS[pool].taskQueue, extraQueues: extraQueues.map((q) => q.taskQueue), accel: probe.accel?.mode }, 'polling');
    await Promise.all([worker.run(), ...extra.map((w) => w.run())]);
  } finally {
    await connection.close();
  }
}

/**
 * The deploy activities of a pool, wired from the descriptors of the target types routed to it:
 * none when it runs no target type; an artifact store (verified fetches into
 * $KUBEDOS_HOME/artifacts) when any of them deploys bytes; `ssh` health checks over the SSH layer,
 * pinned to each node's recorded host key, logging in as root with the SSH agent's keys
 * (SSH_AUTH_SOCK) — one of them must be among the fleet's authorized keys.
 */
export function deployActivitiesOf(pool: PoolName): ActivityMap {
  const targets = targetsOfPool(pool);
  if (!targets.length) return {};
  const store = targets.some((t) => t.accepts !== 'any') ? configuredStoreOrRefuse(pool) : undefined;
  return createDeployActivities({
    serves: targets.map((t) => t.type),
    fetchArtifact: store && artifactsFromStore(store, path.join(stateDir(), 'artifacts')),
    ssh: createSshProbe(),
  }) as ActivityMap;
}

/**
 * Run a pool entry point as a program, reporting startup failures on stderr. The deploy
 * activities of the pool's target types are added here; `activities` are the pool's own (build).
 */
export function main(pool: PoolName, activities: ActivityMap = {}, extraQueues: readonly ExtraQueue[] = []): void {
  runPool(pool, { ...deployActivitiesOf(pool), ...activities }, extraQueues).then(
    () => process.exit(0),
    (err) => {
      logger.error({ pool, error: String(err?.stack ?? err) }, 'worker failed');
      process.exit(1);
    },
  );
}

/** The configured artifact store, or refuse the pool's queue (exit 78) on a malformed KUBEDOS_S3_* setting, saying which and why. */
export function configuredStoreOrRefuse(pool: PoolName): ArtifactStore {
  try {
    return configuredStore();
  } catch (err) {
    logger.error({ hint: (err as { hint?: string }).hint }, `refusing to poll ${POOLS[pool].taskQueue}: ${(err as Error).message}`);
    process.exit(WORKER_REFUSED_EXIT);
  }
}
