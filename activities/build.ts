/**
 * Manufacturing activities (build pool): thin adapters over src/foundry. They heartbeat with the
 * current step, pass the cancellation signal down to every subprocess, and are idempotent: the
 * result is recorded under the (plan, lock) key, and a repeat finds it and skips; each artifact
 * is also recorded by (image inputs, lock, format and its options), so another set of the same image's formats
 * reuses what was made.
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
import { buildImage as runBuild, canonicalJson, formatNamed, imageInputs, parseLock, serializeLock, sha256Hex, type BuildManifest, type BuildPlan, type FormatName } from '../src/foundry';
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

/**
 * The key of one artifact whatever else was asked for: the image's inputs, the lock, the format
 * and that format's own options. A build records each artifact's result under
 * `builds/artifact/<key>`, so a later request for some of its formats (alone, or in another
 * order) reuses them: artifacts do not depend on their siblings (plan.ts inputDigest).
 */
export function artifactKey(plan: BuildPlan, lockDigest: string | undefined, format: FormatName): string {
  const options = formatNamed(format).options?.(plan);
  return sha256Hex(canonicalJson({ image: imageInputs(plan), lock: lockDigest ?? 'unlocked', format, options }));
}

const artifactRef = (plan: BuildPlan, lockDigest: string | undefined, format: FormatName) => `builds/artifact/${artifactKey(plan, lockDigest, format)}`;

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

/** Whether a blob is staged on this host or already in the store. */
async function present(staging: ArtifactStore, store: ArtifactStore, digest: string): Promise<boolean> {
  return (await staging.has(digest)) || (staging !== store && (await store.has(digest)));
}

type RecordedBuild = BuildImageResult & { publicationDigest?: string; publicationRef?: string };

async function readRecord(staging: ArtifactStore, digest: string): Promise<BuildImageResult> {
  const { publicationDigest: _p, publicationRef: _r, publishQueue: _q, ...result } = JSON.parse((await staging.getBytes(digest)).toString('utf8')) as RecordedBuild;
  return result;
}

/** A recorded build whose artifacts are still staged here or already in the store. */
async function findRecorded(staging: ArtifactStore, store: ArtifactStore, key: string): Promise<BuildImageResult | undefined> {
  const digest = await staging.getRef(`builds/${key}`);
  if (!digest) return undefined;
  const result = await readRecord(staging, digest);
  for (const d of [...result.artifacts.map((a) => a.sha256), result.manifestDigest, result.lockBlob]) if (!(await present(staging, store, d))) return undefined;
  return { ...result, reused: true, ranMmdebstrap: false, timings: {} };
}

/**
 * The requested formats, each taken from a recorded build of the same image inputs and lock
 * (a full build, then a request for one of its formats): a result with a build manifest of just
 * those artifacts, staged. Undefined unless one lock and layer made every one of them.
 */
async function findByFormats(staging: ArtifactStore, store: ArtifactStore, plan: BuildPlan, lockDigest: string | undefined): Promise<BuildImageResult | undefined> {
  const records: BuildImageResult[] = [];
  for (const format of plan.formats) {
    const digest = await staging.getRef(artifactRef(plan, lockDigest, format));
    if (!digest) return undefined;
    records.push(await readRecord(staging, digest));
  }
  const [first] = records;
  if (!first || records.some((r) => r.lockDigest !== first.lockDigest || r.layerDigest !== first.layerDigest || r.inputDigest !== first.inputDigest)) return undefined;
  const artifacts = plan.formats.flatMap((format) => records.find((r) => r.artifacts.some((a) => a.format === format))!.artifacts.filter((a) => a.format === format));
  for (const d of [...artifacts.map((a) => a.sha256), first.manifestDigest, first.lockBlob]) if (!(await present(staging, store, d))) return undefined;
  const manifest = JSON.parse((await (await staging.has(first.manifestDigest) ? staging : store).getBytes(first.manifestDigest)).toString('utf8')) as BuildManifest;
  manifest.artifacts = artifacts.map(({ format, file, sha256, size }) => ({ format, file, sha256, size }));
  const manifestDigest = (await staging.putBytes(`${JSON.stringify(manifest, null, 2)}\n`)).sha256;
  return { ...first, manifestDigest, artifacts, reused: true, ranMmdebstrap: false, timings: {} };
}

/** Record a result under its exact key, the key of the lock it resolved, and each format's image key. */
async function record(staging: ArtifactStore, input: BuildImageInput, plan: BuildPlan, result: BuildImageResult): Promise<void> {
  const digest = (await staging.putBytes(JSON.stringify(result))).sha256;
  await staging.setRef(`builds/${buildKey(input)}`, digest);
  // The lock this build resolved is what a later locked build of the same plan will name.
  await staging.setRef(`builds/${buildKey({ planDigest: input.planDigest, lockDigest: result.lockBlob })}`, digest);
  for (const lock of new Set([input.lockDigest, result.lockBlob])) {
    for (const format of new Set(result.artifacts.map((a) => a.format))) await staging.setRef(artifactRef(plan, lock, format as FormatName), digest);
  }
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
      if (!input.scratch) {
        const made = await findByFormats(staging, deps.store, plan, input.lockDigest);
        if (made) {
          ctx.log.info('every requested format was made by an earlier build of the same inputs; reusing them', { image: made.image, formats: plan.formats });
          await record(staging, input, plan, made);
          return { ...made, publishQueue };
        }
      }
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
        if (!input.scratch) await record(staging, input, plan, final);
        return { ...final, publishQueue };
      } finally {
        clearInterval(timer);
        await fs.rm(scratchDir, { recursive: true, force: true });
      }
    },
  };
}

export type BuildActivities = ReturnType<typeof createBuildActivities>;
