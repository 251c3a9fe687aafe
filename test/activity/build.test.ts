/**
 * The build activity as an adapter: heartbeats, cancellation reaching the engine, staging into
 * the store (then publishBuild publishes what was staged), idempotency. The engine is replaced by a small fake that writes real files, so these
 * run in milliseconds; the real engine is exercised by test/e2e/build*.test.ts.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { kubedosFailureInterceptors } from '../../src/temporal/activity-failures';
import { MockActivityEnvironment } from '@temporalio/testing';
import { buildKey, createBuildActivities, type BuildHeartbeat, type BuildImageResult } from '../../activities/build';
import { createPublishActivities, type PublishBuildResult } from '../../activities/publish';
import { serializePlan } from '../../src/foundry/from-spec';
import type { BuildPlan, buildImage } from '../../src/foundry';
import { LocalStore } from '../../src/store/local';
import { FoundrySigner } from '../../src/store/signing';
import { verifyArtifact } from '../../src/store/verify';

const plan: BuildPlan = {
  base: { suite: 'bookworm', mirror: 'http://deb.debian.org/debian', components: ['main'], packages: ['systemd'], architecture: 'amd64' },
  sourceDateEpoch: 1735689600,
  image: { name: 'worker', role: 'worker', hostname: 'worker', files: [{ path: '/etc/x', content: Buffer.from([0, 1, 2]), mode: 0o644, owner: 'root:root' }], units: [], firstBoot: [], authorizedKeys: [], passwordLogin: false, diskSizeBytes: 2 ** 30 },
  formats: ['raw'],
};

const lock = { lockVersion: 1 as const, suite: 'bookworm', architecture: 'amd64', baseInputs: 'x', packages: [] };

/** A fake engine: writes one artifact, reports steps, honours the abort signal. */
function fakeEngine(calls: { n: number }, options: { waitForAbort?: boolean } = {}): typeof buildImage {
  return async (p, o) => {
    calls.n += 1;
    o.onStep?.('prepareRootfs', 1);
    if (options.waitForAbort) {
      // A cancel that lands before the engine listens (a loaded machine: the test cancels after 50 ms) counts too.
      await new Promise((_, reject) => {
        const abort = () => reject(new Error('engine saw abort'));
        if (o.signal!.aborted) abort();
        else o.signal!.addEventListener('abort', abort, { once: true });
      });
    }
    await fs.mkdir(o.outputDir, { recursive: true });
    const bytes = Buffer.from(`disk of ${p.image.name}`);
    await fs.writeFile(path.join(o.outputDir, 'worker.raw'), bytes);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    o.onStep?.('produce-raw', 1);
    return {
      manifest: {
        schema: 'kubedos.build-manifest/v1', image: { name: p.image.name, role: p.image.role, hostname: p.image.hostname },
        inputDigest: 'i'.repeat(64), layerDigest: 'l'.repeat(64), lockDigest: 'k'.repeat(64), sourceDateEpoch: p.sourceDateEpoch,
        diskSizeBytes: p.image.diskSizeBytes, artifacts: [{ format: 'raw', file: 'worker.raw', sha256, size: bytes.length }],
      },
      lock, ranMmdebstrap: true, timings: { prepareRootfs: 1 }, totalMs: 2,
    };
  };
}

function setup(engine: typeof buildImage) {
  const root = mkdtempSync(path.join(os.tmpdir(), 'kubedos-act-'));
  const store = new LocalStore(path.join(root, 'store'));
  const signer = new FoundrySigner(path.join(root, 'keys', 'foundry_ed25519'));
  const activities = createBuildActivities({ store, cacheDir: path.join(root, 'cache'), debCacheDir: path.join(root, 'debs'), workDir: path.join(root, 'work'), engine });
  const publish = createPublishActivities({ store, signer });
  return { root, store, signer, activities, publish };
}

test('builds, stages artifacts in the store, heartbeats each step, records the result; publishBuild then publishes it', async () => {
  const calls = { n: 0 };
  const { store, activities, publish, root, signer } = setup(fakeEngine(calls));
  const planDigest = (await store.putBytes(serializePlan(plan))).sha256;
  const env = new MockActivityEnvironment();
  const beats: BuildHeartbeat[] = [];
  env.on('heartbeat', (d: BuildHeartbeat) => beats.push(structuredClone(d)));

  const result: BuildImageResult = await env.run(activities.buildImage, { planDigest });
  expect(result.reused).toBe(false);
  expect(result.artifacts).toHaveLength(1);
  const artifact = result.artifacts[0]!;
  expect(await fs.readFile(artifact.location, 'utf8')).toBe('disk of worker');
  expect(await store.has(artifact.sha256)).toBe(true);
  expect(beats.map((b) => b.completed.length)).toEqual(expect.arrayContaining([0, 1, 2]));
  expect(beats.at(-1)!.completed).toEqual(['prepareRootfs', 'produce-raw']);
  // Staged, not published: nothing is visible under images/ until publishBuild ran.
  expect(await store.getRef('images/worker/latest')).toBeUndefined();
  expect(result.publishQueue).toBe('test'); // MockActivityEnvironment's task queue: staging is the store itself
  expect(result.mirror).toBe(plan.base.mirror);
  const published: PublishBuildResult = await new MockActivityEnvironment().run(publish.publishBuild, {
    image: result.image, manifestDigest: result.manifestDigest, lockBlob: result.lockBlob, specDigest: 's'.repeat(64), mirror: result.mirror,
  });
  // Published: a signed manifest names the artifact, and it verifies with the Foundry's key.
  expect(published).toMatchObject({ ref: 'images/worker/latest', reused: false, artifacts: [{ sha256: artifact.sha256, existed: true, location: artifact.location }] });
  expect(await store.getRef('images/worker/latest')).toBe(published.publicationDigest);
  const allowedSigners = path.join(root, 'allowed_signers');
  await fs.writeFile(allowedSigners, `${await signer.allowedSignersLine()}\n`);
  await expect(verifyArtifact(store, artifact.sha256, { allowedSigners })).resolves.toBeDefined();
  // The scratch work directory is gone; only the store keeps the artifact.
  expect(await fs.readdir(path.join(root, 'work'))).toEqual([]);

  // Idempotent: the same input finds the recorded result and does not build again.
  const again = await new MockActivityEnvironment().run(activities.buildImage, { planDigest });
  expect(calls.n).toBe(1);
  expect(again).toMatchObject({ reused: true, manifestDigest: result.manifestDigest });
  // …and so does a later build that names the lock this one resolved.
  const locked: BuildImageResult = await new MockActivityEnvironment().run(activities.buildImage, { planDigest, lockDigest: result.lockBlob });
  expect(calls.n).toBe(1);
  expect(locked.reused).toBe(true);
  expect(await store.getRef(`builds/${buildKey({ planDigest, lockDigest: result.lockBlob })}`)).toBeDefined();
});

test('scratch builds run again and are not recorded', async () => {
  const calls = { n: 0 };
  const { store, activities } = setup(fakeEngine(calls));
  const planDigest = (await store.putBytes(serializePlan(plan))).sha256;
  await new MockActivityEnvironment().run(activities.buildImage, { planDigest });
  await new MockActivityEnvironment().run(activities.buildImage, { planDigest, scratch: true });
  expect(calls.n).toBe(2);
});

test('cancellation reaches the engine through the abort signal', async () => {
  const { store, activities } = setup(fakeEngine({ n: 0 }, { waitForAbort: true }));
  const planDigest = (await store.putBytes(serializePlan(plan))).sha256;
  const env = new MockActivityEnvironment();
  const running = env.run(activities.buildImage, { planDigest });
  setTimeout(() => env.cancel(), 50);
  await expect(running).rejects.toThrow(/engine saw abort|cancel/i);
});

test('a tampered plan blob is refused before anything is built', async () => {
  const calls = { n: 0 };
  const { store, activities } = setup(fakeEngine(calls));
  const planDigest = (await store.putBytes(serializePlan(plan))).sha256;
  const blob = store.localPath(planDigest);
  await fs.chmod(blob, 0o644);
  await fs.writeFile(blob, serializePlan({ ...plan, sourceDateEpoch: 1 }));
  await expect(new MockActivityEnvironment().run(activities.buildImage, { planDigest })).rejects.toThrow(/expected sha256:/);
  expect(calls.n).toBe(0);
});


test('with a remote store the build stages on this host; publishBuild uploads from there, once; lost staging is named', async () => {
  const calls = { n: 0 };
  const root = mkdtempSync(path.join(os.tmpdir(), 'kubedos-act-'));
  const store = new LocalStore(path.join(root, 'remote')); // stands in for S3: another store than staging
  const staging = new LocalStore(path.join(root, 'staging'));
  const signer = new FoundrySigner(path.join(root, 'keys', 'foundry_ed25519'));
  const dirs = { cacheDir: path.join(root, 'cache'), debCacheDir: path.join(root, 'debs'), workDir: path.join(root, 'work') };
  const build = createBuildActivities({ store, staging, publishQueue: 'kubedos-build@host-a', engine: fakeEngine(calls), ...dirs });
  const { publishBuild } = createPublishActivities({ store, staging, signer });
  const planDigest = (await store.putBytes(serializePlan(plan))).sha256;

  const built: BuildImageResult = await new MockActivityEnvironment().run(build.buildImage, { planDigest });
  const sha = built.artifacts[0]!.sha256;
  expect(built.publishQueue).toBe('kubedos-build@host-a');
  expect(await staging.has(sha)).toBe(true);
  expect(await store.has(sha)).toBe(false);
  expect(await staging.getRef(`builds/${buildKey({ planDigest })}`)).toBeDefined();

  const input = { image: built.image, manifestDigest: built.manifestDigest, lockBlob: built.lockBlob, specDigest: 's'.repeat(64) };
  const first: PublishBuildResult = await new MockActivityEnvironment().run(publishBuild, input);
  expect(first).toMatchObject({ reused: false, artifacts: [{ sha256: sha, existed: false, location: store.localPath(sha) }] });
  expect(await store.has(sha)).toBe(true);
  expect(await store.has(built.lockBlob)).toBe(true);
  // The CLI reads the resolved lock from the configured store: it is there.
  expect(await store.getRef('images/worker/latest')).toBe(first.publicationDigest);

  // A second publish of the same build finds it and does nothing.
  const second: PublishBuildResult = await new MockActivityEnvironment().run(publishBuild, input);
  expect(second).toMatchObject({ reused: true, publicationDigest: first.publicationDigest });

  // A damaged staged copy is never uploaded: a typed, non-retryable failure (the workflow rebuilds).
  const fresh = new LocalStore(path.join(root, 'fresh'));
  const blob = staging.localPath(sha);
  await fs.chmod(blob, 0o644);
  const good = await fs.readFile(blob);
  await fs.writeFile(blob, Buffer.from(good).fill(0x41, 0, 1));
  // Through the workers' own boundary: the typed error leaves as a non-retryable failure of its class.
  const damaged = await new MockActivityEnvironment(undefined, { interceptors: [kubedosFailureInterceptors] })
    .run(createPublishActivities({ store: fresh, staging, signer }).publishBuild, input)
    .catch((e: unknown) => e);
  expect(damaged).toMatchObject({ type: 'ArtifactNotStagedError', nonRetryable: true });
  expect((damaged as Error).message).toMatch(new RegExp(`the staged copy of sha256:${sha} is damaged: .*content hashes to sha256:`));
  expect(await fresh.has(sha)).toBe(false);
  expect(await fresh.getRef('images/worker/latest')).toBeUndefined();
  await fs.writeFile(blob, good);

  // Staged copies gone (cleaned up) but published: the record is still reused, no rebuild.
  await staging.deleteBlob(sha);
  const again: BuildImageResult = await new MockActivityEnvironment().run(build.buildImage, { planDigest });
  expect(again.reused).toBe(true);
  expect(calls.n).toBe(1);

  // Neither staged nor published: a typed, non-retryable failure that names the file.
  const other = new LocalStore(path.join(root, 'other'));
  const lost = createPublishActivities({ store: other, staging, signer }).publishBuild;
  const err = await new MockActivityEnvironment(undefined, { interceptors: [kubedosFailureInterceptors] }).run(lost, input).catch((e: unknown) => e);
  expect(err).toMatchObject({ type: 'ArtifactNotStagedError', nonRetryable: true });
  expect((err as Error).message).toMatch(/worker\.raw \(sha256:[0-9a-f]{64}\) is neither staged on this host/);
});

/** A fake engine making one artifact per requested format, each independent of its siblings. */
function formatsEngine(built: string[][]): typeof buildImage {
  return async (p, o) => {
    built.push([...p.formats]);
    await fs.mkdir(o.outputDir, { recursive: true });
    const artifacts = await Promise.all(
      p.formats.map(async (format) => {
        const bytes = Buffer.from(`disk of ${p.image.name} as ${format}`);
        await fs.writeFile(path.join(o.outputDir, `worker.${format}`), bytes);
        return { format, file: `worker.${format}`, sha256: createHash('sha256').update(bytes).digest('hex'), size: bytes.length };
      }),
    );
    return {
      manifest: {
        schema: 'kubedos.build-manifest/v1', image: { name: p.image.name, role: p.image.role, hostname: p.image.hostname },
        inputDigest: 'i'.repeat(64), layerDigest: 'l'.repeat(64), lockDigest: 'k'.repeat(64), sourceDateEpoch: p.sourceDateEpoch,
        diskSizeBytes: p.image.diskSizeBytes, artifacts,
      },
      lock, ranMmdebstrap: true, timings: {}, totalMs: 1,
    };
  };
}

test('a later request for some of a build\'s formats, alone or in another order, reuses what it made', async () => {
  const built: string[][] = [];
  const { store, activities } = setup(formatsEngine(built));
  const planOf = async (formats: BuildPlan['formats']) => (await store.putBytes(serializePlan({ ...plan, formats }))).sha256;
  const full: BuildImageResult = await new MockActivityEnvironment().run(activities.buildImage, { planDigest: await planOf(['raw', 'qcow2', 'vmdk', 'ova']), lockDigest: undefined });
  const locked = { lockDigest: full.lockBlob };

  const alone: BuildImageResult = await new MockActivityEnvironment().run(activities.buildImage, { planDigest: await planOf(['qcow2']), ...locked });
  expect(alone.reused).toBe(true);
  expect(alone.artifacts.map((a) => [a.format, a.sha256])).toEqual([['qcow2', full.artifacts.find((a) => a.format === 'qcow2')!.sha256]]);
  // Its build manifest names just that artifact (what its publication will list).
  const manifest = JSON.parse((await store.getBytes(alone.manifestDigest)).toString('utf8')) as { artifacts: { format: string }[]; inputDigest: string };
  expect(manifest.artifacts.map((a) => a.format)).toEqual(['qcow2']);
  expect(manifest.inputDigest).toBe(full.inputDigest);

  const reordered: BuildImageResult = await new MockActivityEnvironment().run(activities.buildImage, { planDigest: await planOf(['ova', 'raw']), ...locked });
  expect(reordered.reused).toBe(true);
  expect(reordered.artifacts.map((a) => a.format)).toEqual(['ova', 'raw']);
  // A format no earlier build made is built (the engine runs again).
  const other: BuildImageResult = await new MockActivityEnvironment().run(activities.buildImage, { planDigest: await planOf(['qcow2', 'iso']), ...locked });
  expect(other.reused).toBe(false);
  expect(built).toEqual([['raw', 'qcow2', 'vmdk', 'ova'], ['qcow2', 'iso']]);
});
