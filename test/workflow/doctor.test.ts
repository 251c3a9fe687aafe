/** The doctor workflow against the real dev server, with real pool workers in this process. */
import { randomUUID } from 'node:crypto';
import type { Worker } from '@temporalio/worker';
import type { PoolReport } from '../../workflows/doctor';
import type { PoolProbe } from '../../src/exec/probe';
import { connectTestEnv, testPoolWorker, type TestEnv } from '../support/temporal';

let env: TestEnv;
beforeAll(async () => {
  env = await connectTestEnv();
});
afterAll(async () => env?.close());

async function runWith<T>(workers: Worker[], fn: () => Promise<T>): Promise<T> {
  let result!: T;
  const runs = workers.map((w) => w.run());
  try {
    result = await fn();
  } finally {
    for (const w of workers) w.shutdown();
    await Promise.all(runs);
  }
  return result;
}

test('doctor reports real probes from running pools and unreachable for pools nobody polls', async () => {
  const id = randomUUID().slice(0, 8);
  const queues = { control: `t-${id}-control`, build: `t-${id}-build`, kvm: `t-${id}-kvm`, vsphere: `t-${id}-vsphere`, cloud: `t-${id}-cloud` };
  const workers = [
    await testPoolWorker(env, 'control', queues.control),
    await testPoolWorker(env, 'build', queues.build),
    await testPoolWorker(env, 'kvm', queues.kvm),
  ];
  const reports = await runWith(workers, () =>
    env.client.workflow.execute('doctor', {
      taskQueue: queues.control,
      workflowId: `doctor-test-${id}`,
      args: [{ pools: ['control', 'build', 'kvm', 'cloud'], pickupTimeout: '2s', taskQueues: queues }],
    }),
  ) as PoolReport[];

  const byPool = Object.fromEntries(reports.map((r) => [r.pool, r]));
  expect(byPool.control!.state).toBe('ok');
  expect(byPool.build!.state).toBe('ok');
  // Real tools with real versions, found on this machine.
  const mkfs = byPool.build!.probe!.tools.find((t) => t.name === 'mkfs.ext4')!;
  expect(mkfs.found).toBe(true);
  expect(mkfs.version).toMatch(/^1\.\d+/);
  expect(byPool.kvm!.probe!.accel?.mode).toMatch(/^(kvm|tcg)$/);
  expect(byPool.kvm!.probe!.pid).toBe(process.pid);
  expect(byPool.cloud!.state).toBe('unreachable');
  expect(byPool.cloud!.error).toMatch(/no worker is polling/);
});

test('a pool whose probe lacks something is reported degraded with what to install', async () => {
  const id = randomUUID().slice(0, 8);
  const queues = { control: `t-${id}-control`, vsphere: `t-${id}-vsphere` };
  const fakeProbe: PoolProbe = {
    pool: 'vsphere', taskQueue: queues.vsphere, ok: false, missing: ['install govc (not on PATH)'],
    tools: [{ name: 'govc', found: false }], files: [], plugins: [], host: 'h', pid: 1, node: process.version,
  };
  const workers = [
    await testPoolWorker(env, 'control', queues.control),
    await testPoolWorker(env, 'vsphere', queues.vsphere, { probeCapabilities: async () => fakeProbe }),
  ];
  const handle = await env.client.workflow.start('doctor', {
    taskQueue: queues.control,
    workflowId: `doctor-test-${id}`,
    args: [{ pools: ['vsphere'], pickupTimeout: '5s', taskQueues: queues }],
  });
  const [reports, status] = await runWith(workers, async () => {
    const result = (await handle.result()) as PoolReport[];
    // The status query (what the CLI's progress bar polls) reflects the finished run.
    return [result, await handle.query<{ done: number; total: number }>('doctorStatus')] as const;
  });
  expect(reports).toEqual([expect.objectContaining({ pool: 'vsphere', state: 'degraded' })]);
  expect(reports[0]!.probe!.missing).toEqual(['install govc (not on PATH)']);
  expect(status).toMatchObject({ done: 1, total: 1 });
});
