/** The manufacture workflow on the real dev server: results, status, retry policy by error type. */
import { randomUUID } from 'node:crypto';
import { WorkflowFailedError } from '@temporalio/client';
import type { Worker } from '@temporalio/worker';
import type { BuildImageInput, BuildImageResult } from '../../activities/build';
import { BuildPlanError } from '../../src/errors';
import { connectTestEnv, testPoolWorker, type TestEnv } from '../support/temporal';

let env: TestEnv;
beforeAll(async () => {
  env = await connectTestEnv();
});
afterAll(async () => env?.close());

const result = (image: string): BuildImageResult => ({
  image, inputDigest: 'a'.repeat(64), layerDigest: 'b'.repeat(64), lockDigest: 'c'.repeat(64), manifestDigest: 'd'.repeat(64),
  lockBlob: 'e'.repeat(64), publicationDigest: '1'.repeat(64), publicationRef: `images/${image}/latest`, sourceDateEpoch: 1, artifacts: [], reused: false, ranMmdebstrap: true, timings: {},
});

async function run(buildImage: (input: BuildImageInput) => Promise<BuildImageResult>) {
  const id = randomUUID().slice(0, 8);
  const queues = { control: `m-${id}-control`, build: `m-${id}-build` };
  const workers: Worker[] = [
    await testPoolWorker(env, 'control', queues.control),
    await testPoolWorker(env, 'build', queues.build, { buildImage }),
  ];
  const runs = workers.map((w) => w.run());
  const handle = await env.client.workflow.start('manufacture', {
    taskQueue: queues.control,
    workflowId: `manufacture-test-${id}`,
    args: [{ image: 'worker', planDigest: 'f'.repeat(64), buildQueue: queues.build }],
  });
  try {
    const outcome = await handle.result().then((r) => ({ ok: true as const, r }), (e) => ({ ok: false as const, e }));
    const status = await handle.query<{ phase: string; error?: string }>('manufactureStatus');
    return { outcome, status };
  } finally {
    for (const w of workers) w.shutdown();
    await Promise.all(runs);
  }
}

test('returns the build result and reports phase done', async () => {
  const { outcome, status } = await run(async (input) => result(`built-${input.planDigest.slice(0, 4)}`));
  expect(outcome).toEqual({ ok: true, r: expect.objectContaining({ image: 'built-ffff' }) });
  expect(status.phase).toBe('done');
});

test('bad input (a non-retryable error type) fails at once, without retries', async () => {
  let attempts = 0;
  const { outcome, status } = await run(async () => {
    attempts += 1;
    throw new BuildPlanError(['image.hostname is not a valid host name']);
  });
  expect(outcome.ok).toBe(false);
  expect((outcome as { e: unknown }).e).toBeInstanceOf(WorkflowFailedError);
  expect(attempts).toBe(1);
  expect(status).toMatchObject({ phase: 'failed', error: expect.stringMatching(/hostname/) });
});

test('a transient failure is retried and the build completes', async () => {
  let attempts = 0;
  const { outcome } = await run(async () => {
    attempts += 1;
    if (attempts === 1) throw new Error('mirror timed out');
    return result('worker');
  });
  expect(outcome.ok).toBe(true);
  expect(attempts).toBe(2);
}, 60_000);
