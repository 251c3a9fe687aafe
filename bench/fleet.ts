/**
 * bench/fleet: the control plane at 10, 100 and 1000 nodes. Hollow nodes (tiny local processes,
 * no VMs) are deployed through the full control path — the embedded Temporal dev server, the
 * fleet workflow, a rollout child, one child workflow per node, createNode/startNode/
 * awaitNodeHealthy activities on the control pool — then torn down. Prints figures; not a test.
 *
 *   bench/fleet [--sizes 10,100,1000] [--boot-delay 0s] [--batch 250] [--json] [--keep]
 *
 * Per size: wall time from start to every node healthy, nodes/s, p50/p99 of node time-to-ready
 * (from the deploy's start to the node's health check passing, and inside the node workflow),
 * teardown time, and CPU seconds of the dev server and the control worker over the deploy.
 * Goal: 1000 nodes ≤ 60 s on this machine. Runs in its own KUBEDOS_HOME (a temp dir).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const args = process.argv.slice(2);
const flag = (name: string) => args.includes(name);
const option = (name: string, fallback: string) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] ? args[i + 1]! : fallback;
};
const sizes = option('--sizes', '10,100,1000').split(',').map(Number);
const bootDelayMs = Number(option('--boot-delay', '0s').replace(/ms$|s$/, (u) => (u === 's' ? '000' : ''))) || 0;
const batch = Number(option('--batch', '250'));

const home = mkdtempSync(path.join(os.tmpdir(), 'kubedos-bench-fleet-'));
process.env.KUBEDOS_HOME = home;
process.env.KUBEDOS_POOLS = 'control';
process.env.KUBEDOS_LOG_LEVEL ??= 'warn';
delete process.env.TEMPORAL_ADDRESS;

// Imported after the environment is set: paths and pools are read from it.
const { startStack, stopStack } = require('../src/temporal/stack') as typeof import('../src/temporal/stack');
const { connectClient } = require('../src/temporal/client') as typeof import('../src/temporal/client');
const api = require('../workflows/fleet-api') as typeof import('../workflows/fleet-api');
const { POOLS } = require('../src/pools/pools') as typeof import('../src/pools/pools');

function cpuSeconds(pid: number | undefined): number {
  if (!pid) return NaN;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks (100 Hz on Linux)
  } catch {
    return NaN;
  }
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

interface Figures {
  nodes: number;
  wallS: number;
  nodesPerS: number;
  readyP50S: number;
  readyP99S: number;
  nodeWorkflowP50S: number;
  nodeWorkflowP99S: number;
  teardownS: number;
  serverCpuS: number;
  workerCpuS: number;
  load1: number;
}

async function main(): Promise<void> {
  const stack = await startStack({ pools: ['control'] });
  const workerPid = stack.pools.find((p) => p.pool === 'control')?.pid;
  const { client, close } = await connectClient({ startEmbedded: false });
  const results: Figures[] = [];
  try {
    for (const [i, n] of sizes.entries()) {
      const platform = `bench${i}`;
      const input = {
        platform,
        fleet: 'sim',
        target: { name: 'hollow', spec: { type: 'hollow', bootDelay: bootDelayMs, unhealthyImages: [] } as never },
        deployQueue: POOLS.control.taskQueue,
        hostnamePrefix: 'sim',
        authorizedKeys: [],
        healthCheck: { type: 'readiness', timeout: 600_000, interval: 250, retries: 0 } as never,
        rollout: { maxSurge: '100%', maxUnavailable: 0, failureThreshold: 10, batchSize: batch },
        image: { name: 'worker', digest: 'f'.repeat(64) },
        replicas: n,
      };
      const cpu0 = { server: cpuSeconds(stack.serverPid), worker: cpuSeconds(workerPid) };
      const t0 = Date.now();
      const handle = await client.workflow.start('fleet', { taskQueue: POOLS.control.taskQueue, workflowId: api.fleetWorkflowId(platform, 'sim'), args: [input] });
      let status;
      for (;;) {
        status = await handle.query(api.fleetStatusQuery);
        if (status.phase === 'steady' && status.nodes.filter((x) => x.state === 'ready').length === n) break;
        await new Promise((r) => setTimeout(r, 1000)); // queries cost the server too: poll gently
      }
      const wall = (Date.now() - t0) / 1000;
      const cpu1 = { server: cpuSeconds(stack.serverPid), worker: cpuSeconds(workerPid) };
      // Time-to-ready from the deploy's start, by the node workflows' own clock.
      const fromStart = status.nodes.map((x) => ((x.readyAt ?? NaN) - t0) / 1000);
      const inWorkflow = status.nodes.map((x) => (x.readyMs ?? NaN) / 1000);
      const t1 = Date.now();
      await handle.signal(api.teardownSignal);
      await handle.result();
      const figures: Figures = {
        nodes: n,
        wallS: wall,
        nodesPerS: n / wall,
        readyP50S: percentile(fromStart, 50),
        readyP99S: percentile(fromStart, 99),
        nodeWorkflowP50S: percentile(inWorkflow, 50),
        nodeWorkflowP99S: percentile(inWorkflow, 99),
        teardownS: (Date.now() - t1) / 1000,
        serverCpuS: cpu1.server - cpu0.server,
        workerCpuS: cpu1.worker - cpu0.worker,
        load1: os.loadavg()[0]!,
      };
      results.push(figures);
      if (!flag('--json')) {
        process.stdout.write(
          `${String(n).padStart(5)} nodes: ${wall.toFixed(1)} s, ${figures.nodesPerS.toFixed(1)} nodes/s, ` +
            `ready p50 ${figures.readyP50S.toFixed(1)} s p99 ${figures.readyP99S.toFixed(1)} s (node workflow p50 ${figures.nodeWorkflowP50S.toFixed(1)} s p99 ${figures.nodeWorkflowP99S.toFixed(1)} s), ` +
            `teardown ${figures.teardownS.toFixed(1)} s, CPU server ${figures.serverCpuS.toFixed(1)} s worker ${figures.workerCpuS.toFixed(1)} s, load ${figures.load1.toFixed(1)}\n`,
        );
      }
    }
    if (flag('--json')) process.stdout.write(`${JSON.stringify({ cpus: os.cpus().length, bootDelayMs, batch, results }, null, 2)}\n`);
    const big = results.find((r) => r.nodes === 1000);
    if (big && !flag('--json')) process.stdout.write(`goal 1000 nodes ≤ 60 s: ${big.wallS <= 60 ? 'met' : 'missed'} (${big.wallS.toFixed(1)} s)\n`);
  } finally {
    await close();
    await stopStack();
    if (!flag('--keep')) rmSync(home, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exitCode = 1;
});
