/**
 * Is anyone serving a task queue? DescribeTaskQueue lists the workers that polled it recently
 * (the server keeps a poller for a few minutes after its last poll; a worker with a free slot
 * polls continuously). Used before a workflow routes a step to a pool — so a pool with no worker
 * fails that step in bounded time with what to start, instead of waiting for ever — and by the
 * CLI to say the same before it starts anything.
 */
import type { Client } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { PoolUnavailableError } from '../errors';

export interface PollerInfo {
  identity: string;
  lastAccessTime?: Date;
}

/** The workers that polled `taskQueue` for activity tasks recently. */
export async function activityPollers(client: Client, taskQueue: string): Promise<PollerInfo[]> {
  const res = await client.workflowService.describeTaskQueue({
    namespace: client.options.namespace,
    taskQueue: { name: taskQueue, kind: temporal.api.enums.v1.TaskQueueKind.TASK_QUEUE_KIND_NORMAL },
    taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
  });
  return (res.pollers ?? []).map((p) => ({
    identity: p.identity ?? '?',
    lastAccessTime: p.lastAccessTime?.seconds != null ? new Date(Number(p.lastAccessTime.seconds) * 1000) : undefined,
  }));
}

export interface PollerWaitOptions {
  /** How long to wait for a first poller. @default 120_000 */
  waitMs?: number;
  /** Between two looks. @default 2_000 */
  intervalMs?: number;
  signal?: AbortSignal;
  /** Called before each wait (activities heartbeat from it). */
  onWait?: (waitedMs: number) => void;
}

/** Resolve with the pollers once `taskQueue` has one; PoolUnavailableError after `waitMs` without. */
export async function awaitPollers(client: Client, pool: string, taskQueue: string, options: PollerWaitOptions = {}): Promise<PollerInfo[]> {
  const waitMs = options.waitMs ?? 120_000;
  const started = Date.now();
  for (;;) {
    const pollers = await activityPollers(client, taskQueue);
    if (pollers.length) return pollers;
    const waited = Date.now() - started;
    if (waited >= waitMs) throw new PoolUnavailableError(pool, taskQueue, waited);
    options.onWait?.(waited);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(resolve, Math.min(options.intervalMs ?? 2_000, waitMs - waited));
      options.signal?.addEventListener('abort', () => (clearTimeout(timer), reject(options.signal!.reason)), { once: true });
    });
  }
}
