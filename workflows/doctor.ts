/**
 * doctor: ask every pool for its capability probe through its own task queue. A pool with no
 * worker polling shows up as unreachable after a short schedule-to-start timeout.
 */
import { ActivityFailure, TimeoutFailure, defineQuery, proxyActivities, setHandler } from '@temporalio/workflow';
import type { Duration } from '@temporalio/common';
import type { ProbeActivities } from '../activities/probe';
import type { PoolProbe } from '../src/exec/probe';
import { POOLS, POOL_NAMES, type PoolName } from '../src/pools/pools';

export interface DoctorInput {
  /** Pools to ask. @default every pool */
  pools?: PoolName[];
  /** How long to wait for a worker to pick up the probe. @default '8s' */
  pickupTimeout?: Duration;
  /** Queue of each pool when it is not the default from POOLS (site-specific or test queues). */
  taskQueues?: Partial<Record<PoolName, string>>;
}

export interface PoolReport {
  pool: PoolName;
  taskQueue: string;
  /** `ok`: the worker answered and has everything; `degraded`: answered but lacks something. */
  state: 'ok' | 'degraded' | 'unreachable';
  probe?: PoolProbe;
  error?: string;
}

export interface DoctorStatus {
  total: number;
  done: number;
  reports: PoolReport[];
}

export const doctorStatusQuery = defineQuery<DoctorStatus>('doctorStatus');

function describeFailure(err: unknown): string {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  if (cause instanceof TimeoutFailure) return `no worker is polling (timed out ${cause.timeoutType === 'SCHEDULE_TO_START' ? 'waiting for pickup' : 'running'})`;
  return cause instanceof Error ? cause.message : String(cause);
}

export async function doctor(input: DoctorInput = {}): Promise<PoolReport[]> {
  const pools = input.pools ?? [...POOL_NAMES];
  const status: DoctorStatus = { total: pools.length, done: 0, reports: [] };
  setHandler(doctorStatusQuery, () => status);

  const probeOne = async (pool: PoolName): Promise<PoolReport> => {
    const taskQueue = input.taskQueues?.[pool] ?? POOLS[pool].taskQueue;
    const { probeCapabilities } = proxyActivities<ProbeActivities>({
      taskQueue,
      scheduleToStartTimeout: input.pickupTimeout ?? '8s',
      startToCloseTimeout: '60s',
      retry: { maximumAttempts: 1 },
    });
    let report: PoolReport;
    try {
      const probe = await probeCapabilities();
      report = { pool, taskQueue, state: probe.ok ? 'ok' : 'degraded', probe };
    } catch (err) {
      report = { pool, taskQueue, state: 'unreachable', error: describeFailure(err) };
    }
    status.done += 1;
    status.reports.push(report);
    return report;
  };

  return Promise.all(pools.map(probeOne));
}
