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
import type { NodeRecord } from '../../workflows/fleet-api';
import { hollowFleetInput, hollowSpec } from '../support/fleet';
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
