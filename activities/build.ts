/**
 * Manufacturing activities (build pool): thin adapters over src/build. They heartbeat with the
 * current step, pass the cancellation signal down to every subprocess, and are idempotent: the
 * result is recorded in the store under the (plan, lock) key, and a repeat finds it and skips.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { buildImage as runBuild, parseLock, serializeLock, type BuildManifest } from '../src/build';
import { parsePlan } from '../src/build/from-spec';
import { StoreError } from '../src/errors';
import type { ArtifactStore } from '../src/store/store';

export interface BuildDeps {
  store: ArtifactStore;
  /** Layer and filesystem caches. */
  cacheDir: string;
  /** Content-addressed .deb cache shared by every build on this host. */
  debCacheDir: string;
  /** Scratch space for builds in progress. */
  workDir: string;
  /** The engine. @default buildImage from src/build */
  engine?: typeof runBuild;
}

export interface BuildImageInput {
  /** sha256 of the serialized BuildPlan in the store. */
  planDigest: string;
  /** sha256 of the image's lock in the store; absent = resolve against the mirror. */
  lockDigest?: string;
  /** Rebuild from empty layer and .deb caches, ignoring recorded results (kubedos verify). */
  scratch?: boolean;
}

export interface BuiltArtifact {
  format: string;
  file: string;
  sha256: string;
  size: number;
  /** Where the artifact is: a local path for the local store. */
  location: string;
}

export interface BuildImageResult {
  image: string;
  inputDigest: string;
  layerDigest: string;
  lockDigest: string;
  /** Digest of the build manifest blob; the lock blob is `lockBlob`. */
  manifestDigest: string;
  lockBlob: string;
  sourceDateEpoch: number;
  artifacts: BuiltArtifact[];
  /** True when a recorded result was found and nothing was built. */
  reused: boolean;
  ranMmdebstrap: boolean;
  timings: Record<string, number>;
}

/** What a heartbeat carries: where the build is, so a person (or a retry) can see it. */
export interface BuildHeartbeat {
  step: string;
  completed: string[];
}

const HEARTBEAT_MS = 5_000;

/** The store key of a finished build: the plan and the lock it was built with. */
export function buildKey(input: Pick<BuildImageInput, 'planDigest' | 'lockDigest'>): string {
  return createHash('sha256').update(`${input.planDigest}:${input.lockDigest ?? 'unlocked'}`).digest('hex');
}

async function findRecorded(store: ArtifactStore, key: string): Promise<BuildImageResult | undefined> {
  const digest = await store.getRef(`builds/${key}`);
  if (!digest) return undefined;
  const result = JSON.parse((await store.getBytes(digest)).toString('utf8')) as BuildImageResult;
  for (const a of result.artifacts) if (!(await store.has(a.sha256))) return undefined;
  return { ...result, reused: true, ranMmdebstrap: false, timings: {} };
}

async function publish(store: ArtifactStore, outputDir: string, manifest: BuildManifest, lockText: string): Promise<Omit<BuildImageResult, 'reused' | 'ranMmdebstrap' | 'timings'>> {
  const artifacts: BuiltArtifact[] = [];
  for (const a of manifest.artifacts) {
    const ref = await store.putFile(path.join(outputDir, a.file), { link: true });
    if (ref.sha256 !== a.sha256) throw new StoreError(`${a.file}: stored digest ${ref.sha256} differs from the manifest's ${a.sha256}`);
    artifacts.push({ ...a, location: store.localPath(a.sha256) ?? `sha256:${a.sha256}` });
  }
  const manifestBlob = await store.putBytes(`${JSON.stringify(manifest, null, 2)}\n`);
  const lockBlob = await store.putBytes(lockText);
  return {
    image: manifest.image.name,
    inputDigest: manifest.inputDigest,
    layerDigest: manifest.layerDigest,
    lockDigest: manifest.lockDigest,
    manifestDigest: manifestBlob.sha256,
    lockBlob: lockBlob.sha256,
    sourceDateEpoch: manifest.sourceDateEpoch,
    artifacts,
  };
}

export function createBuildActivities(deps: BuildDeps) {
  return {
    /** Manufacture one image from a stored plan (and lock), publish its artifacts, record the result. */
    async buildImage(input: BuildImageInput): Promise<BuildImageResult> {
      const ctx = Context.current();
      const key = buildKey(input);
      if (!input.scratch) {
        const recorded = await findRecorded(deps.store, key);
        if (recorded) {
          ctx.log.info('build already recorded; reusing it', { image: recorded.image, inputDigest: recorded.inputDigest });
          return recorded;
        }
      }
      const plan = parsePlan((await deps.store.getBytes(input.planDigest)).toString('utf8'));
      const lock = input.lockDigest ? parseLock((await deps.store.getBytes(input.lockDigest)).toString('utf8')) : undefined;

      await fs.mkdir(deps.workDir, { recursive: true });
      const scratchDir = await fs.mkdtemp(path.join(deps.workDir, `${plan.image.name}-`));
      const beat: BuildHeartbeat = { step: 'starting', completed: [] };
      const timer = setInterval(() => ctx.heartbeat(beat), HEARTBEAT_MS);
      ctx.heartbeat(beat);
      try {
        const result = await (deps.engine ?? runBuild)(plan, {
          cacheDir: input.scratch ? path.join(scratchDir, 'cache') : deps.cacheDir,
          debCacheDir: input.scratch ? path.join(scratchDir, 'debs') : deps.debCacheDir,
          outputDir: path.join(scratchDir, 'out'),
          lock,
          signal: ctx.cancellationSignal,
          onStep: (step) => {
            beat.completed.push(step);
            beat.step = `after ${step}`;
            ctx.heartbeat(beat);
          },
        });
        const published = await publish(deps.store, path.join(scratchDir, 'out'), result.manifest, serializeLock(result.lock));
        const final: BuildImageResult = { ...published, reused: false, ranMmdebstrap: result.ranMmdebstrap, timings: result.timings };
        if (!input.scratch) {
          const record = await deps.store.putBytes(JSON.stringify(final));
          await deps.store.setRef(`builds/${key}`, record.sha256);
          // The lock this build resolved is what a later locked build of the same plan will name.
          await deps.store.setRef(`builds/${buildKey({ planDigest: input.planDigest, lockDigest: published.lockBlob })}`, record.sha256);
        }
        return final;
      } finally {
        clearInterval(timer);
        await fs.rm(scratchDir, { recursive: true, force: true });
      }
    },
  };
}

export type BuildActivities = ReturnType<typeof createBuildActivities>;
