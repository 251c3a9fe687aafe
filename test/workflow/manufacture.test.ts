/**
 * The manufacture workflow on the real dev server: build then publish on the build host's queue,
 * results, status, retry policy by error type, rebuild when the build host lost what it staged.
 */
import { randomUUID } from 'node:crypto';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { Worker } from '@temporalio/worker';
import type { BuildImageInput, BuildImageResult } from '../../activities/build';
import type { PublishBuildInput, PublishBuildResult } from '../../activities/publish';
import type { ManufactureResult } from '../../workflows/manufacture';
import { ArtifactNotStagedError, BuildPlanError, DigestMismatchError } from '../../src/errors';
import { connectTestEnv, testPoolWorker, type TestEnv } from '../support/temporal';

let env: TestEnv;
beforeAll(async () => {
  env = await connectTestEnv();
});
afterAll(async () => env?.close());

const result = (image: string, publishQueue?: string): BuildImageResult => ({
  image, inputDigest: 'a'.repeat(64), layerDigest: 'b'.repeat(64), lockDigest: 'c'.repeat(64), manifestDigest: 'd'.repeat(64),
  lockBlob: 'e'.repeat(64), sourceDateEpoch: 1, reused: false, ranMmdebstrap: true, timings: {}, mirror: 'http://deb.debian.org/debian',
  artifacts: [{ format: 'raw', file: `${image}.raw`, sha256: '2'.repeat(64), size: 3, location: '/staging/2222' }],
  ...(publishQueue ? { publishQueue } : {}),
});

const published = (input: PublishBuildInput, where = 's3://bucket'): PublishBuildResult => ({
  ref: `images/${input.image}/latest`, publicationDigest: '1'.repeat(64), signatureDigest: '3'.repeat(64), sbomDigest: '4'.repeat(64), provenanceDigest: '5'.repeat(64),
  artifacts: [{ format: 'raw', file: `${input.image}.raw`, sha256: '2'.repeat(64), size: 3, location: `${where}/blobs/sha256/${'2'.repeat(64)}`, existed: false }],
  reused: false,
});

type Build = (input: BuildImageInput, queues: { control: string; build: string }) => Promise<BuildImageResult>;
type Publish = (input: PublishBuildInput) => Promise<PublishBuildResult>;

/** Run one manufacture with a control worker, a build worker and optionally a host-only publish worker. */
async function run(buildImage: Build, publishBuild: Publish = async (i) => published(i), host?: { suffix: string; publishBuild: Publish }, extra: Record<string, unknown> = {}) {
  const id = randomUUID().slice(0, 8);
  const queues = { control: `m-${id}-control`, build: `m-${id}-build` };
  const workers: Worker[] = [
    await testPoolWorker(env, 'control', queues.control),
    await testPoolWorker(env, 'build', queues.build, { buildImage: (input: BuildImageInput) => buildImage(input, queues), publishBuild }),
  ];
  if (host) workers.push(await testPoolWorker(env, 'build', `${queues.build}${host.suffix}`, { publishBuild: host.publishBuild }));
  const runs = workers.map((w) => w.run());
  const handle = await env.client.workflow.start('manufacture', {
    taskQueue: queues.control,
    workflowId: `manufacture-test-${id}`,
    args: [{ image: 'worker', planDigest: 'f'.repeat(64), buildQueue: queues.build, specDigest: '9'.repeat(64), ...extra }],
  });
  try {
    const outcome = await handle.result().then((r) => ({ ok: true as const, r: r as ManufactureResult }), (e) => ({ ok: false as const, e }));
    const status = await handle.query<{ phase: string; error?: string }>('manufactureStatus');
    return { outcome, status, queues };
  } finally {
    for (const w of workers) w.shutdown();
    await Promise.all(runs);
  }
}

test('builds, then publishes, and returns the build with its publication; phase done', async () => {
  const seen: PublishBuildInput[] = [];
  const { outcome, status } = await run(
    async (input) => result(`built-${input.planDigest.slice(0, 4)}`),
    async (input) => {
      seen.push(input);
      return published(input);
    },
  );
  expect(outcome).toEqual({ ok: true, r: expect.objectContaining({ image: 'built-ffff', publicationDigest: '1'.repeat(64), publicationRef: 'images/built-ffff/latest', publicationReused: false }) });
  // The artifacts are where the publication put them.
  expect(outcome.ok && outcome.r.artifacts[0]!.location).toBe(`s3://bucket/blobs/sha256/${'2'.repeat(64)}`);
  // Only digests and names reach the publish activity.
  expect(seen).toEqual([{ image: 'built-ffff', manifestDigest: 'd'.repeat(64), lockBlob: 'e'.repeat(64), specDigest: '9'.repeat(64), mirror: 'http://deb.debian.org/debian' }]);
  expect(status.phase).toBe('done');
});

test('publish runs on the queue the build named (the build host), not on the shared build queue', async () => {
  let wrongQueue = 0;
  let hostQueue = 0;
  const { outcome } = await run(
    async (_input, queues) => result('worker', `${queues.build}@host-a`),
    async () => {
      wrongQueue += 1;
      throw ApplicationFailure.nonRetryable('publish ran on the shared build queue');
    },
    {
      suffix: '@host-a',
      publishBuild: async (input) => {
        hostQueue += 1;
        return published(input);
      },
    },
  );
  expect(outcome).toMatchObject({ ok: true, r: { publicationDigest: '1'.repeat(64), publishQueue: expect.stringMatching(/@host-a$/) } });
  expect({ wrongQueue, hostQueue }).toEqual({ wrongQueue: 0, hostQueue: 1 });
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

test('when the build host lost what it staged, the image is built again and then published', async () => {
  let builds = 0;
  let publishes = 0;
  const { outcome, status } = await run(
    async () => {
      builds += 1;
      return result('worker');
    },
    async (input) => {
      publishes += 1;
      if (publishes === 1) throw new ArtifactNotStagedError('worker.raw is neither staged on this host nor in s3://bucket');
      return published(input);
    },
  );
  expect(outcome.ok).toBe(true);
  expect({ builds, publishes }).toEqual({ builds: 2, publishes: 2 });
  expect(status.phase).toBe('done');
});

test('when the build host is gone (its queue unpolled), the image is built again elsewhere and published there', async () => {
  let builds = 0;
  const { outcome } = await run(
    async (_input, queues) => {
      builds += 1;
      // First on a host that vanished right after building; then on one whose queue is polled.
      return result('worker', builds === 1 ? `${queues.build}@gone` : undefined);
    },
    async (input) => published(input),
    undefined,
    { publishStartTimeout: '2s' },
  );
  expect(outcome).toMatchObject({ ok: true, r: { publicationDigest: '1'.repeat(64) } });
  expect(builds).toBe(2);
});

test('a publish failure that retrying cannot fix fails the workflow, phase failed', async () => {
  let publishes = 0;
  const { outcome, status } = await run(
    async () => result('worker'),
    async () => {
      publishes += 1;
      // The real class, as the publish activity throws it: the worker's boundary makes it final.
      throw new DigestMismatchError('22', '00', 'worker.raw');
    },
  );
  expect(outcome.ok).toBe(false);
  expect(publishes).toBe(1);
  expect(status).toMatchObject({ phase: 'failed', error: expect.stringMatching(/hashes to/) });
});
