/**
 * Routing a step to a pool: first make sure a worker of that pool polls its queue (a local
 * activity on this worker asks the server), so a pool that is down fails the step in bounded time
 * with what to start, instead of leaving it queued for ever. Steps already scheduled when a pool
 * dies are bounded by their schedule-to-start timeouts (see node.ts).
 */
import { patched, proxyLocalActivities, workflowInfo } from '@temporalio/workflow';
import type { ProbeActivities } from '../activities/probe';
import { POOL_NAMES, POOLS } from '../src/pools/pools';

/** How long a step waits for its pool to have a worker (one that is restarting has time to come back). */
export const POOL_WAIT_MS = 120_000;

/** The pool whose queue this is (a site's or test's own queue is named by itself). */
export function poolOfQueue(taskQueue: string): string {
  return POOL_NAMES.find((p) => POOLS[p].taskQueue === taskQueue) ?? taskQueue;
}

/** Resolves once some worker polls `taskQueue`; fails with PoolUnavailableError after `waitMs`. Free on this workflow's own queue. */
export async function requirePool(taskQueue: string, waitMs: number = POOL_WAIT_MS): Promise<void> {
  if (taskQueue === workflowInfo().taskQueue) return;
  // Runs begun before this check existed replay without it.
  if (!patched('kubedos-require-pool')) return;
  const { awaitPool } = proxyLocalActivities<ProbeActivities>({
    startToCloseTimeout: waitMs + 60_000,
    retry: { initialInterval: '1s', maximumAttempts: 3 },
  });
  await awaitPool({ pool: poolOfQueue(taskQueue), taskQueue, waitMs });
}
