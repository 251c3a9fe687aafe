/**
 * Manufacturing activities (build pool): thin adapters over src/build. They heartbeat with the
 * current step, pass the cancellation signal down to every subprocess, and are idempotent: the
 * result is recorded in the store under the (plan, lock) key, and a repeat finds it and skips.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { buildImage as runBuild, parseLock, serializeLock } from '../src/build';
import { parsePlan } from '../src/build/from-spec';
import { publishBuild } from '../src/store/publish';
import type { FoundrySigner } from '../src/store/signing';
import type { ArtifactStore } from '../src/store/store';

export interface BuildDeps {
  store: ArtifactStore;
  /** Layer and filesystem caches. */
  cacheDir: string;
  /** Content-addressed .deb cache shared by every build on this host. */
  debCacheDir: string;
  /** Scratch space for builds in progress. */
  workDir: string;
  /** Signs each published manifest with the Foundry's key. */
  signer: FoundrySigner;
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
  /** sha256 of the platform spec, recorded in the provenance. */
  specDigest?: string;
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
  /** Digest of the signed publication manifest (artifacts, lock, SBOM, provenance) and its ref. */
  publicationDigest: string;
  publicationRef: string;
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
        // Artifacts, then lock, SBOM and provenance, then the signed manifest, then the ref: a
        // publication is visible only once complete.
        const lockText = serializeLock(result.lock);
        const published = await publishBuild(
          deps.store,
          {
            outputDir: path.join(scratchDir, 'out'),
            manifest: result.manifest,
            lockText,
            specDigest: input.specDigest ?? input.planDigest,
            signer: deps.signer,
            mirror: plan.base.mirror,
            securityMirror: plan.base.securityMirror,
            ref: input.scratch ? `scratch/${plan.image.name}` : undefined,
            invocationId: ctx.info.workflowExecution?.workflowId,
          },
          { signal: ctx.cancellationSignal },
        );
        const { manifest } = result;
        const final: BuildImageResult = {
          image: manifest.image.name,
          inputDigest: manifest.inputDigest,
          layerDigest: manifest.layerDigest,
          lockDigest: manifest.lockDigest,
          manifestDigest: (await deps.store.putBytes(`${JSON.stringify(manifest, null, 2)}\n`)).sha256,
          lockBlob: (await deps.store.putBytes(lockText)).sha256,
          publicationDigest: published.manifest.sha256,
          publicationRef: published.ref,
          sourceDateEpoch: manifest.sourceDateEpoch,
          artifacts: manifest.artifacts.map((a) => ({ ...a, location: deps.store.localPath(a.sha256) ?? `sha256:${a.sha256}` })),
          reused: false,
          ranMmdebstrap: result.ranMmdebstrap,
          timings: result.timings,
        };
        if (!input.scratch) {
          const record = await deps.store.putBytes(JSON.stringify(final));
          await deps.store.setRef(`builds/${key}`, record.sha256);
          // The lock this build resolved is what a later locked build of the same plan will name.
          await deps.store.setRef(`builds/${buildKey({ planDigest: input.planDigest, lockDigest: final.lockBlob })}`, record.sha256);
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
