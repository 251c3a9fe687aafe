/**
 * Which pools running fleets need and nobody serves: for `kubedos status` and `kubedos stack
 * status`. A running fleet needs the pool of its own workflow's task queue (control) and the pool
 * of its target's steps (its deployQueue). A pool is served when DescribeTaskQueue lists a poller
 * seen recently: the server keeps a dead worker's entry for minutes, but a live one polls again
 * at least every long-poll interval (one minute). With the embedded stack, the supervisor's own
 * view is added: a worker that is not running is said at once, with why and its log.
 */
import type { Client } from '@temporalio/client';
import type { FleetStatus } from '../../workflows/fleet-api';
import { fleetStatusQuery } from '../../workflows/fleet-api';
import { describeExit } from '../exec/supervisor';
import { POOL_NAMES, POOLS } from '../pools/pools';
import { activityPollers } from '../temporal/pollers';
import type { PoolStatus, StackStatus } from '../temporal/stack';

/** A live worker re-polls within the server's long-poll interval (60 s); older entries are the dead's. */
export const POLLER_FRESH_MS = 90_000;

export interface PoolWarning {
  pool: string;
  taskQueue: string;
  /** `platform/fleet` of each running fleet that needs it. */
  fleets: string[];
  /** The pool's worker log, when the embedded stack runs it. */
  log?: string;
  message: string;
}

function poolOfQueue(taskQueue: string): string {
  return POOL_NAMES.find((p) => POOLS[p].taskQueue === taskQueue) ?? taskQueue;
}

function whyNotRunning(p: PoolStatus): string {
  const exit = p.lastExit ? `${describeExit(p.lastExit)} at ${p.lastExit.at}` : 'no exit recorded';
  switch (p.state) {
    case 'refused':
      return `its worker refused the queue: ${(p.reason ?? '').split('\n').pop()}`;
    case 'backoff':
      return `its worker ended (${exit})${p.crashLoop ? ' and is crash-looping' : ''}; the supervisor restarts it`;
    case 'waiting':
      return 'its worker waits for the Temporal server';
    case 'exited':
      return `its worker is gone (${exit}) and no supervisor has restarted it yet`;
    default:
      return `its worker is ${p.state}`;
  }
}

/** Is `taskQueue` served? undefined when it is, else why not. */
async function unserved(client: Client, taskQueue: string, stack?: StackStatus): Promise<string | undefined> {
  const pool = poolOfQueue(taskQueue);
  const embedded = stack?.pools.find((p) => p.taskQueue === taskQueue);
  if (embedded && !embedded.running) return whyNotRunning(embedded);
  const pollers = await activityPollers(client, taskQueue);
  if (pollers.some((p) => !p.lastAccessTime || Date.now() - p.lastAccessTime.getTime() < POLLER_FRESH_MS)) return undefined;
  if (embedded) return 'its worker runs but has not polled for over a minute (look at its log)';
  if (stack) return `the embedded stack does not run this pool (KUBEDOS_POOLS); start it with \`kubedos stack start --pools ${pool}\``;
  return 'start a worker of this pool where its tools are (see `kubedos doctor`)';
}

/**
 * Warnings for every pool a running fleet needs that has no recent poller (or, embedded, whose
 * worker is not running). Fleets are found through visibility, which needs no worker; a fleet's
 * deploy queue comes from its status query, asked only when its own queue is served (a query
 * nobody can answer would only wait).
 */
export async function poolWarnings(client: Client, stack?: StackStatus): Promise<PoolWarning[]> {
  const fleets: { id: string; taskQueue: string }[] = [];
  for await (const wf of client.workflow.list({ query: `WorkflowType = 'fleet' AND ExecutionStatus = 'Running'` })) fleets.push({ id: wf.workflowId, taskQueue: wf.taskQueue });
  const verdicts = new Map<string, Promise<string | undefined>>();
  const verdict = (q: string) => {
    if (!verdicts.has(q)) verdicts.set(q, unserved(client, q, stack));
    return verdicts.get(q)!;
  };
  const needs = new Map<string, Set<string>>();
  const need = (q: string, fleet: string) => needs.set(q, (needs.get(q) ?? new Set()).add(fleet));
  await Promise.all(
    fleets.map(async (f) => {
      const name = f.id.replace(/^fleet\//, '');
      need(f.taskQueue, name);
      if (await verdict(f.taskQueue)) return;
      const status: FleetStatus | undefined = await client.connection
        .withDeadline(Date.now() + 5_000, () => client.workflow.getHandle(f.id).query(fleetStatusQuery))
        .catch(() => undefined);
      if (status?.deployQueue) need(status.deployQueue, name);
    }),
  );
  const warnings: PoolWarning[] = [];
  for (const [taskQueue, names] of needs) {
    const why = await verdict(taskQueue);
    if (!why) continue;
    const pool = poolOfQueue(taskQueue);
    const log = stack?.pools.find((p) => p.taskQueue === taskQueue)?.log;
    const list = [...names].sort();
    warnings.push({
      pool,
      taskQueue,
      fleets: list,
      log,
      message: `pool ${pool} has no worker polling ${taskQueue}, and ${list.length === 1 ? `fleet ${list[0]} needs it` : `fleets ${list.join(', ')} need it`}: ${why}${log ? `; log: ${log}` : ''}`,
    });
  }
  return warnings.sort((a, b) => a.pool.localeCompare(b.pool));
}
