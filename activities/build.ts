/**
 * Manufacturing activities (build pool): thin adapters over src/foundry. They heartbeat with the
 * current step, pass the cancellation signal down to every subprocess, and are idempotent: the
 * result is recorded under the (plan, lock) key, and a repeat finds it and skips.
 *
 * buildImage only builds and stages: the artifacts, the build manifest and the lock land in this
 * host's staging store (the store itself when it is local). Publishing them — uploads, SBOM,
 * provenance, signature, ref — is the separate publishBuild activity (activities/publish.ts),
 * which the workflow runs on the queue this activity names (`publishQueue`), i.e. on this host.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { buildImage as runBuild, parseLock, serializeLock } from '../src/foundry';
import { parsePlan } from '../src/foundry/from-spec';
import { BuildFailedError, StoreObjectNotFoundError } from '../src/errors';
import type { ArtifactStore } from '../src/store/store';

export interface BuildDeps {
  /** The configured store: plans and locks are read from it (the CLI stages them there). */
  store: ArtifactStore;
  /**
   * Where this host keeps what it built until it is published: the local store under the state
   * directory when `store` is remote (S3). @default store
   */
  staging?: ArtifactStore;
  /**
   * The task queue on which this host runs publishBuild: a queue only this host polls when the
   * staging store is host-local. @default the queue buildImage runs on
   */
  publishQueue?: string;
  /** Layer and filesystem caches. */
  cacheDir: string;
  /** Content-addressed .deb cache shared by every build on this host. */
  debCacheDir: string;
  /** Scratch space for builds in progress. */
  workDir: string;
  /** The engine. @default buildImage from src/foundry */
  engine?: typeof runBuild;
}

export interface BuildImageInput {
  /** sha256 of the serialized BuildPlan in the store. */
  planDigest: string;
  /** sha256 of the image's lock in the store; absent = resolve against the mirror. */
  lockDigest?: string;
  /** Rebuild from empty layer and .deb caches, ignoring recorded results (kubedos verify). */
  scratch?: boolean;
  /** sha256 of the platform spec, recorded in the provenance. */
  specDigest?: string;
}

export interface BuiltArtifact {
  format: string;
  file: string;
  sha256: string;
  size: number;
  /** Where the artifact is: a local path in the staging store (or `sha256:<hex>`). */
  location: string;
}

export interface BuildImageResult {
  image: string;
  inputDigest: string;
  layerDigest: string;
  lockDigest: string;
  /** Digest of the build manifest blob; the lock blob is `lockBlob` (both staged with the artifacts). */
  manifestDigest: string;
  lockBlob: string;
  /** The archives the packages came from (recorded in the SBOM and provenance at publish time). */
  mirror?: string;
  securityMirror?: string;
  /** Where publishBuild must run to find the staged artifacts. @default the build queue */
  publishQueue?: string;
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

/** A blob the CLI put in the store for this build (plan, lock), as text. */
async function staged(store: ArtifactStore, digest: string, what: string): Promise<string> {
  if (!(await store.has(digest))) {
    throw new StoreObjectNotFoundError(
      `the ${what} sha256:${digest} is not in ${store.location}, the store this build worker uses`,
      'the CLI and the build workers must use the same store: set KUBEDOS_S3_* alike for both (restart the embedded stack after changing them: kubedos stack stop)',
    );
  }
  return (await store.getBytes(digest)).toString('utf8');
}

/** A recorded build whose artifacts are still staged here or already in the store. */
async function findRecorded(staging: ArtifactStore, store: ArtifactStore, key: string): Promise<BuildImageResult | undefined> {
  const digest = await staging.getRef(`builds/${key}`);
  if (!digest) return undefined;
  const { publicationDigest: _p, publicationRef: _r, publishQueue: _q, ...result } = JSON.parse((await staging.getBytes(digest)).toString('utf8')) as BuildImageResult & {
    publicationDigest?: string;
    publicationRef?: string;
  };
  for (const a of result.artifacts) if (!(await staging.has(a.sha256)) && (staging === store || !(await store.has(a.sha256)))) return undefined;
  for (const d of [result.manifestDigest, result.lockBlob]) if (!(await staging.has(d)) && (staging === store || !(await store.has(d)))) return undefined;
  return { ...result, reused: true, ranMmdebstrap: false, timings: {} };
}


export function createBuildActivities(deps: BuildDeps) {
  const staging = deps.staging ?? deps.store;
  return {
    /** Manufacture one image from a stored plan (and lock), stage its artifacts, record the result. */
    async buildImage(input: BuildImageInput): Promise<BuildImageResult> {
      const ctx = Context.current();
      const key = buildKey(input);
      const publishQueue = deps.publishQueue ?? ctx.info.taskQueue;
      if (!input.scratch) {
        const recorded = await findRecorded(staging, deps.store, key);
        if (recorded) {
          ctx.log.info('build already recorded; reusing it', { image: recorded.image, inputDigest: recorded.inputDigest });
          return { ...recorded, publishQueue };
        }
      }
      const plan = parsePlan(await staged(deps.store, input.planDigest, 'plan'));
      const lock = input.lockDigest ? parseLock(await staged(deps.store, input.lockDigest, 'lock')) : undefined;

      await fs.mkdir(deps.workDir, { recursive: true });
      const scratchDir = await fs.mkdtemp(path.join(deps.workDir, `${plan.image.name}-`));
      const beat: BuildHeartbeat = { step: 'starting', completed: [] };
      const timer = setInterval(() => ctx.heartbeat(beat), HEARTBEAT_MS);
      ctx.heartbeat(beat);
      try {
        const outputDir = path.join(scratchDir, 'out');
        const result = await (deps.engine ?? runBuild)(plan, {
          cacheDir: input.scratch ? path.join(scratchDir, 'cache') : deps.cacheDir,
          debCacheDir: input.scratch ? path.join(scratchDir, 'debs') : deps.debCacheDir,
          outputDir,
          lock,
          signal: ctx.cancellationSignal,
          onStep: (step) => {
            beat.completed.push(step);
            beat.step = `after ${step}`;
            ctx.heartbeat(beat);
          },
        });
        // Stage: artifacts (hard-linked when the staging store is on the same filesystem), each
        // checked against the digest the engine recorded, then the build manifest and the lock.
        const { manifest } = result;
        beat.step = 'staging';
        ctx.heartbeat(beat);
        for (const a of manifest.artifacts) {
          const put = await staging.putFile(path.join(outputDir, a.file), { link: true, signal: ctx.cancellationSignal });
          if (put.sha256 !== a.sha256 || put.size !== a.size) {
            throw new BuildFailedError(`${a.file} is sha256:${put.sha256} (${put.size} bytes) but the build manifest says sha256:${a.sha256} (${a.size} bytes)`, 'the output changed after the engine hashed it: build again');
          }
        }
        const lockText = serializeLock(result.lock);
        const final: BuildImageResult = {
          image: manifest.image.name,
          inputDigest: manifest.inputDigest,
          layerDigest: manifest.layerDigest,
          lockDigest: manifest.lockDigest,
          manifestDigest: (await staging.putBytes(`${JSON.stringify(manifest, null, 2)}\n`)).sha256,
          lockBlob: (await staging.putBytes(lockText)).sha256,
          mirror: plan.base.mirror,
          securityMirror: plan.base.securityMirror,
          sourceDateEpoch: manifest.sourceDateEpoch,
          artifacts: manifest.artifacts.map((a) => ({ ...a, location: staging.localPath(a.sha256) ?? `sha256:${a.sha256}` })),
          reused: false,
          ranMmdebstrap: result.ranMmdebstrap,
          timings: result.timings,
        };
        if (!input.scratch) {
          const record = await staging.putBytes(JSON.stringify(final));
          await staging.setRef(`builds/${key}`, record.sha256);
          // The lock this build resolved is what a later locked build of the same plan will name.
          await staging.setRef(`builds/${buildKey({ planDigest: input.planDigest, lockDigest: final.lockBlob })}`, record.sha256);
        }
        return { ...final, publishQueue };
      } finally {
        clearInterval(timer);
        await fs.rm(scratchDir, { recursive: true, force: true });
      }
    },
  };
}

export type BuildActivities = ReturnType<typeof createBuildActivities>;
