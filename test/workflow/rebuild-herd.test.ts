/**
 * rebuildHerd against the real dev server: manufacture (through the real manufacture workflow,
 * with stand-in build/publish activities on a test build queue — the real ones are tested in
 * test/workflow/manufacture.test.ts and the e2e build tests), then roll every running fleet of
 * the image onto the new publication and report each fleet's outcome.
 */
import { randomUUID } from 'node:crypto';
import type { Worker } from '@temporalio/worker';
import type { RebuildHerdResult } from '../../workflows/rebuild-herd';
import { teardownSignal } from '../../workflows/fleet-api';
import { DIGEST_A, DIGEST_B, hollowHarness, readyCount, startFleet, waitForStatus, type HollowHarness } from '../support/fleet';
import { connectTestEnv, testPoolWorker, type TestEnv } from '../support/temporal';

let env: TestEnv;
let h: HollowHarness;
let build: Worker;
let running: Promise<void>;
const id = randomUUID().slice(0, 8);
const buildQueue = `t-${id}-build`;
let builds = 0;

// Stand-ins for the Foundry's activities: a build that "produces" publication DIGEST_B.
const foundry = {
  async buildImage(input: { planDigest: string }) {
    builds++;
    return { image: 'worker', inputDigest: input.planDigest, layerDigest: 'l', lockDigest: 'k', manifestDigest: 'm'.repeat(64), lockBlob: 'b'.repeat(64), sourceDateEpoch: 1, artifacts: [], reused: builds > 1 };
  },
  async publishBuild() {
    return { ref: 'images/worker/latest', publicationDigest: DIGEST_B, signatureDigest: 's', sbomDigest: 's', provenanceDigest: 'p', artifacts: [], reused: builds > 1 };
  },
};

beforeAll(async () => {
  env = await connectTestEnv();
  h = await hollowHarness(env, id);
  build = await testPoolWorker(env, 'build', buildQueue, foundry as never);
  running = Promise.all([h.worker.run(), build.run()]).then(() => undefined);
});

afterAll(async () => {
  const driver = h?.driver();
  for (const node of (await driver?.list({})) ?? []) await driver!.destroy(node.nodeId);
  h?.worker.shutdown();
  build?.shutdown();
  await running;
  await env?.close();
});

test('the herd is rebuilt: every running fleet of the image rolls onto the new publication', async () => {
  const p = `p${id}`;
  const fleet = await startFleet(env, h, h.input(p, { replicas: 2, image: { name: 'worker', digest: DIGEST_A } }));
  const before = await waitForStatus(fleet, (s) => s.phase === 'steady' && readyCount(s) === 2);

  const herd = (n: number) =>
    env.client.workflow.execute('rebuildHerd', {
      taskQueue: h.queue,
      workflowId: `herd/${p}/${n}`,
      args: [{ platform: p, images: [{ image: 'worker', manufacture: { image: 'worker', planDigest: 'f'.repeat(64), buildQueue }, fleets: ['workers', 'elsewhere'] }] }],
    }) as Promise<RebuildHerdResult>;

  const first = await herd(1);
  expect(first.images).toEqual([{ image: 'worker', publicationDigest: DIGEST_B, reused: false }]);
  expect(first.fleets).toEqual([
    { fleet: 'workers', image: 'worker', digest: DIGEST_B, outcome: 'completed' },
    { fleet: 'elsewhere', image: 'worker', digest: DIGEST_B, outcome: 'not-running' },
  ]);
  const after = await waitForStatus(fleet, (s) => s.phase === 'steady' && s.generation === 2 && readyCount(s) === 2);
  expect(after.desired.image.digest).toBe(DIGEST_B);
  expect(after.nodes.some((n) => before.nodes.some((b) => b.nodeId === n.nodeId))).toBe(false);

  // Nothing changed: the build is found, the publication reused, the fleet answers "unchanged".
  const second = await herd(2);
  expect(second.images[0]!.reused).toBe(true);
  expect(second.fleets[0]).toMatchObject({ fleet: 'workers', outcome: 'unchanged' });
  expect((await waitForStatus(fleet, (s) => s.phase === 'steady')).generation).toBe(2);

  await fleet.signal(teardownSignal);
  await fleet.result();
});
