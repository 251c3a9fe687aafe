/**
 * The capability probe, registered by every pool under the same name on its own task queue, so a
 * workflow reaches a particular pool by choosing the queue.
 */
import { Context } from '@temporalio/activity';
import type { PoolName } from '../src/pools/pools';
import type { PoolProbe } from '../src/exec/probe';
import { awaitPollers } from '../src/temporal/pollers';

export interface ProbeDeps {
  pool: PoolName;
  probe: (pool: PoolName) => Promise<PoolProbe>;
}

export function createProbeActivities(deps: ProbeDeps) {
  return {
    /** What this worker can do: tools with versions, missing requirements, acceleration. */
    async probeCapabilities(): Promise<PoolProbe> {
      return deps.probe(deps.pool);
    },

    /**
     * Wait (heartbeating) until some worker polls `taskQueue`; a PoolUnavailableError naming the
     * pool and how to start it after `waitMs`. Workflows run it (locally) before they route a
     * step to a pool, so a missing pool fails that step instead of leaving it queued for ever.
     */
    async awaitPool(input: { pool: string; taskQueue: string; waitMs: number }): Promise<number> {
      const ctx = Context.current();
      const pollers = await awaitPollers(ctx.client, input.pool, input.taskQueue, {
        waitMs: input.waitMs,
        signal: ctx.cancellationSignal,
        onWait: (waited) => ctx.heartbeat({ waited }),
      });
      return pollers.length;
    },
  };
}

export type ProbeActivities = ReturnType<typeof createProbeActivities>;
