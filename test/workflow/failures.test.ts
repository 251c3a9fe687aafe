/**
 * Errors across the worker boundary, against the real dev server: a typed error thrown in an
 * activity keeps its class (the failure's type), its retryability (non-retryable classes are
 * tried once, retryable ones again), and its hint, which the CLI prints for a workflow that failed
 * on a worker. Remote activities and local ones (hollow steps on the control worker) alike.
 */
import { randomUUID } from 'node:crypto';
import { WorkflowFailedError } from '@temporalio/client';
import type { Worker } from '@temporalio/worker';
import { createDeployActivities, type TargetRef } from '../../activities/deploy';
import { errorJson, printError } from '../../src/cli/output';
import { BuildPlanError, NodeImageConflictError, SshConnectError } from '../../src/errors';
import { HollowDriver } from '../../src/targets/hollow/driver';
import { teardownSignal, type NodeRecord } from '../../workflows/fleet-api';
import { hollowFleetInput, hollowSpec, waitForStatus } from '../support/fleet';
import { connectTestEnv, testPoolWorker, type TestEnv } from '../support/temporal';

let env: TestEnv;
beforeAll(async () => {
  env = await connectTestEnv();
});
afterAll(async () => env?.close());

/** A hollow driver whose createNode throws `fail(attempt)` until it returns undefined. */
function failingDriver(stateDir: string, fail: (attempt: number) => Error | undefined) {
  let attempts = 0;
  const driver = new (class extends HollowDriver {
    override async create(...args: Parameters<HollowDriver['create']>) {
      const err = fail(++attempts);
      if (err) throw err;
      return super.create(...args);
    }
  })('sim', hollowSpec(), { stateDir });
  return { driver, attempts: () => attempts };
}

async function runNode(deploy: 'remote' | 'local', fail: (attempt: number) => Error | undefined): Promise<{ record: NodeRecord; attempts: number }> {
  const id = randomUUID().slice(0, 8);
  const control = `f-${id}-control`;
  const kvm = deploy === 'remote' ? `f-${id}-kvm` : control;
  const { driver, attempts } = failingDriver(`/tmp/kubedos-failures-${id}`, fail);
  const deployActivities = createDeployActivities({ driverFor: (_t: TargetRef) => driver }) as never;
  const workers: Worker[] = [await testPoolWorker(env, 'control', control, deploy === 'local' ? deployActivities : {})];
  if (deploy === 'remote') workers.push(await testPoolWorker(env, 'kvm', kvm, deployActivities));
  const runs = workers.map((w) => w.run());
  try {
    const template = hollowFleetInput(`f${id}`, kvm);
    const record = await env.client.workflow.execute('fleetNode', {
      taskQueue: control,
      workflowId: `failures-${id}`,
      args: [{ template, nodeId: `f${id}-workers-0000`, hostname: 'worker-0000', generation: 1, image: template.image, prepared: { digest: template.image.digest, location: 'x' } }],
    });
    await driver.destroy(`f${id}-workers-0000`);
    return { record: record as NodeRecord, attempts: attempts() };
  } finally {
    for (const w of workers) w.shutdown();
    await Promise.all(runs);
  }
}

describe.each(['remote', 'local'] as const)('a %s activity', (deploy) => {
  test('that throws a non-retryable class is tried once; the node fails with its message', async () => {
    const { record, attempts } = await runNode(deploy, () => new NodeImageConflictError('sim', 'n', 'b'.repeat(64)));
    expect(attempts).toBe(1);
    expect(record).toMatchObject({ state: 'failed', error: expect.stringMatching(/attempt 1: node n exists on sim with another image \(bbbbbbbbbbbb\)/) });
  });

  test('that throws a retryable class is tried again and the node comes up', async () => {
    const { record, attempts } = await runNode(deploy, (n) => (n < 3 ? new SshConnectError('root@h:22', 'connection refused') : undefined));
    expect(attempts).toBe(3);
    expect(record.state).toBe('ready');
  });
});

test('the hint of an error raised on a worker reaches the CLI, with the failure chain', async () => {
  const id = randomUUID().slice(0, 8);
  const queues = { control: `h-${id}-control`, build: `h-${id}-build` };
  const workers = [
    await testPoolWorker(env, 'control', queues.control),
    await testPoolWorker(env, 'build', queues.build, {
      buildImage: async () => {
        throw new BuildPlanError(['image.hostname is not a valid host name']);
      },
    }),
  ];
  const runs = workers.map((w) => w.run());
  let failure: unknown;
  try {
    await env.client.workflow.execute('manufacture', {
      taskQueue: queues.control,
      workflowId: `hint-${id}`,
      args: [{ image: 'worker', planDigest: 'f'.repeat(64), buildQueue: queues.build }],
    });
  } catch (err) {
    failure = err;
  } finally {
    for (const w of workers) w.shutdown();
    await Promise.all(runs);
  }
  expect(failure).toBeInstanceOf(WorkflowFailedError);
  const json = errorJson(failure).error;
  expect(json.hint).toBe(new BuildPlanError([]).hint);
  expect(json.causes).toEqual([expect.stringMatching(/^activity buildImage failed/), expect.stringMatching(/^BuildPlanError: the build plan is invalid:\n {2}- image\.hostname is not a valid host name$/)]);

  const printed: string[] = [];
  const write = jest.spyOn(process.stderr, 'write').mockImplementation((chunk) => (printed.push(String(chunk)), true));
  try {
    printError(failure);
  } finally {
    write.mockRestore();
  }
  const text = printed.join('').replace(/\x1b\[[0-9;]*m/g, '');
  expect(text).toContain('caused by: BuildPlanError: the build plan is invalid');
  expect(text).toContain(`hint: ${new BuildPlanError([]).hint}`);
});

describe('a step routed to a pool with no worker', () => {
  test('a build fails in bounded time naming the pool, its queue and how to start it', async () => {
    const id = randomUUID().slice(0, 8);
    const control = `nw-${id}-control`;
    const worker = await testPoolWorker(env, 'control', control);
    const run = worker.run();
    const started = Date.now();
    let failure: unknown;
    try {
      await env.client.workflow.execute('manufacture', {
        taskQueue: control,
        workflowId: `no-build-worker-${id}`,
        args: [{ image: 'worker', planDigest: 'f'.repeat(64), buildQueue: `nw-${id}-nobody`, poolWaitMs: 3_000 }],
      });
    } catch (err) {
      failure = err;
    } finally {
      worker.shutdown();
      await run;
    }
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(errorJson(failure).error.causes).toContainEqual(expect.stringMatching(new RegExp(`^PoolUnavailableError: no worker of pool nw-${id}-nobody is polling nw-${id}-nobody \\(waited \\d+ s\\)$`)));
    expect(errorJson(failure).error.hint).toMatch(/start it with `kubedos stack start`/);
  });

  test('a rollout is refused before any node is touched, and the fleet says why', async () => {
    const id = randomUUID().slice(0, 8);
    const control = `nw-${id}-control`;
    const worker = await testPoolWorker(env, 'control', control);
    const run = worker.run();
    try {
      // A queue of its own (a real pool's queue may be served by another test's worker).
      const input = { ...hollowFleetInput(`nw${id}`, `nw-${id}-kvm`, { replicas: 1 }), poolWaitMs: 3_000 };
      const handle = await env.client.workflow.start('fleet', { taskQueue: control, workflowId: `fleet/nw${id}/workers`, args: [input] });
      const status = await waitForStatus(handle, (s) => s.rollouts.length > 0, 60_000);
      expect(status.rollouts[0]).toMatchObject({ outcome: 'rolled-back', error: expect.stringMatching(new RegExp(`refused on sim: no worker of pool nw-${id}-kvm is polling nw-${id}-kvm \\(waited \\d+ s\\)`)) });
      expect(status.nodes).toEqual([]);
      await handle.signal(teardownSignal);
      await handle.result();
    } finally {
      worker.shutdown();
      await run;
    }
  });
});
