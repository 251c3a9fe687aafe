/**
 * rebuildHerd against the real dev server: manufacture (through the real manufacture workflow,
 * with stand-in build/publish activities on a test build queue — the real ones are tested in
 * test/workflow/manufacture.test.ts and the e2e build tests), then roll every running fleet of
 * the image onto the new publication and report each fleet's outcome.
 */
import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import type { Worker } from '@temporalio/worker';
import { createPublishActivities, type PublishBuildResult } from '../../activities/publish';
import { GC_CACHE_PREFIXES } from '../../src/cli/commands/store';
import type { BuildManifest } from '../../src/foundry/manifest';
import { gc } from '../../src/store/gc';
import { LocalStore } from '../../src/store/local';
import { listPins } from '../../src/store/pins';
import { FoundrySigner } from '../../src/store/signing';
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
  async pinPublication(input: { digest: string; reasons: string[] }) {
    pins.push(input);
  },
};
const pins: { digest: string; reasons: string[] }[] = [];

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
  // What the herd deploys is pinned for every fleet of the image, as `kubedos deploy` pins it.
  expect(pins).toEqual([{ digest: DIGEST_B, reasons: [`fleet/${p}/workers`, `fleet/${p}/elsewhere`] }]);
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

test('what a herd rebuild deploys survives `store gc` after a newer build took the image ref', async () => {
  const p = `g${id}`;
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-herd-gc-'));
  const store = new LocalStore(path.join(tmp, 'store'));
  const signer = new FoundrySigner(path.join(tmp, 'keys', 'foundry_ed25519'));
  const realPublish = createPublishActivities({ store, signer });
  // A build stand-in that stages a real (tiny) artifact, manifest and lock in the store, one per plan.
  const stage = async (planDigest: string) => {
    const artifact = await store.putBytes(`disk of ${planDigest}\n`);
    const manifest: BuildManifest = {
      schema: 'kubedos.build-manifest/v1',
      image: { name: 'worker', role: 'worker', hostname: 'worker' },
      inputDigest: planDigest, layerDigest: 'l'.repeat(64), lockDigest: 'k'.repeat(64), sourceDateEpoch: 1_700_000_000, diskSizeBytes: 64,
      artifacts: [{ format: 'raw', file: 'worker.raw', sha256: artifact.sha256, size: artifact.size }],
    };
    const lock = `${JSON.stringify({ lockVersion: 1, suite: 'bookworm', architecture: 'amd64', baseInputs: 'x', packages: [] }, null, 2)}\n`;
    return {
      image: 'worker', inputDigest: planDigest, layerDigest: 'l'.repeat(64), lockDigest: 'k'.repeat(64), sourceDateEpoch: 1, reused: false, ranMmdebstrap: false, timings: {},
      manifestDigest: (await store.putBytes(`${JSON.stringify(manifest, null, 2)}\n`)).sha256, lockBlob: (await store.putBytes(lock)).sha256,
      artifacts: [{ format: 'raw', file: 'worker.raw', sha256: artifact.sha256, size: artifact.size, location: store.localPath(artifact.sha256)! }],
      artifactDigest: artifact.sha256,
    };
  };
  const queue = `t-${id}-gc-build`;
  const worker = await testPoolWorker(env, 'build', queue, { buildImage: (i: { planDigest: string }) => stage(i.planDigest), ...realPublish } as never);
  const run = worker.run();
  try {
    const publishPlan = async (planDigest: string) => {
      const built = await stage(planDigest);
      const published: PublishBuildResult = await new MockActivityEnvironment().run(realPublish.publishBuild, { image: 'worker', manifestDigest: built.manifestDigest, lockBlob: built.lockBlob, specDigest: 's'.repeat(64) });
      return published.publicationDigest;
    };
    // An older publication nobody runs: gc may take it once the ref moved on (proves gc collects).
    const orphan = await publishPlan('0'.repeat(64));

    const fleet = await startFleet(env, h, h.input(p, { replicas: 1, image: { name: 'worker', digest: DIGEST_A } }));
    await waitForStatus(fleet, (s) => s.phase === 'steady' && readyCount(s) === 1);
    const herd = (await env.client.workflow.execute('rebuildHerd', {
      taskQueue: h.queue,
      workflowId: `herd/${p}/gc`,
      args: [{ platform: p, images: [{ image: 'worker', manufacture: { image: 'worker', planDigest: '1'.repeat(64), buildQueue: queue }, fleets: ['workers'] }] }],
    })) as RebuildHerdResult;
    const deployed = herd.images[0]!.publicationDigest;
    expect(herd.fleets[0]).toMatchObject({ fleet: 'workers', outcome: 'completed', digest: deployed });
    expect((await waitForStatus(fleet, (s) => s.phase === 'steady' && s.generation === 2)).desired.image.digest).toBe(deployed);

    // A later build of the image (not deployed) takes images/worker/latest; then gc, as the CLI runs it.
    const newer = await publishPlan('2'.repeat(64));
    expect(await store.getRef('images/worker/latest')).toBe(newer);
    const removed = new Set((await gc(store, { minAgeMs: 0, caches: GC_CACHE_PREFIXES })).removedBlobs.map((b) => b.sha256));
    expect(removed.has(orphan)).toBe(true);
    expect(removed.has(deployed)).toBe(false);
    expect(await store.has(deployed)).toBe(true);
    const { sha256: runningDisk } = (await stage('1'.repeat(64))).artifacts[0]!;
    expect(await store.has(runningDisk)).toBe(true);
    expect((await listPins(store)).map((pinned) => [pinned.reason, pinned.sha256])).toEqual([[`fleet/${p}/workers`, deployed]]);

    await fleet.signal(teardownSignal);
    await fleet.result();
  } finally {
    worker.shutdown();
    await run;
    await fs.rm(tmp, { recursive: true, force: true });
  }
});
