/**
 * The capability probe, registered by every pool under the same name on its own task queue, so a
 * workflow reaches a particular pool by choosing the queue.
 */
import type { PoolName } from '../src/pools/pools';
import type { PoolProbe } from '../src/exec/probe';

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
  };
}

export type ProbeActivities = ReturnType<typeof createProbeActivities>;
