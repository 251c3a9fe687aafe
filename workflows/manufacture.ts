/**
 * manufacture: one image from a stored plan (and lock) to published, recorded artifacts.
 * Everything large stays in the store; history carries digests, names and small records.
 *
 * 1. buildImage (build pool): build, stage the artifacts on the build host, record the result.
 * 2. publishBuild, on the queue buildImage named (that host): resumable uploads, SBOM,
 *    provenance, signed manifest, then the ref.
 * If the build host is gone before publishing starts (its queue is not polled within
 * PUBLISH_START_TIMEOUT) or its staged artifacts are gone, the image is built again — any build
 * host may take it — and published from there.
 */
import type { Duration } from '@temporalio/common';
import { ActivityFailure, ApplicationFailure, TimeoutFailure, defineQuery, log, proxyActivities, setHandler } from '@temporalio/workflow';
import type { BuildActivities, BuildImageInput, BuildImageResult } from '../activities/build';
import type { PublishActivities, PublishBuildResult } from '../activities/publish';
import { ArtifactNotStagedError } from '../src/errors';
import { POOLS } from '../src/pools/pools';
import { requirePool } from './pools';

export interface ManufactureInput extends BuildImageInput {
  /** Image name, for status and search. */
  image: string;
  /** Queue of the build pool when not the default (site-specific or test queues). */
  buildQueue?: string;
  /**
   * How long publishing waits for the build host's own queue to be polled before the image is
   * built again elsewhere. @default '10m'
   */
  publishStartTimeout?: Duration;
  /** How long the build waits for a build worker to poll its queue before it fails. @default POOL_WAIT_MS (2 min) */
  poolWaitMs?: number;
}

/** The build's result, with its artifacts where the publication put them. */
export interface ManufactureResult extends BuildImageResult {
  /** Digest of the signed publication manifest (artifacts, lock, SBOM, provenance). */
  publicationDigest: string;
  /** The ref naming it: `images/<image>/latest` (`scratch/<image>` for verify rebuilds). */
  publicationRef: string;
  /** The publication already existed: nothing was uploaded. */
  publicationReused: boolean;
}

export type ManufacturePhase = 'building' | 'publishing' | 'done' | 'failed';

export interface ManufactureStatus {
  image: string;
  phase: ManufacturePhase;
  error?: string;
}

export const manufactureStatusQuery = defineQuery<ManufactureStatus>('manufactureStatus');

// Timeout presets.
/** A cold build (mmdebstrap, dpkg, images) takes minutes; a dead worker is noticed within the heartbeat timeout. */
const BUILD_TIMEOUTS = { startToCloseTimeout: '2h', heartbeatTimeout: '2m' } as const;
/** Multi-GiB uploads; heartbeats after every part. */
const PUBLISH_TIMEOUTS = { startToCloseTimeout: '2h', heartbeatTimeout: '2m' } as const;
/** How long a publish waits for its build host's queue to be polled before the image is rebuilt elsewhere. */
const PUBLISH_START_TIMEOUT: Duration = '10m';
/** Build-then-publish rounds before giving up (a round is repeated only when the build host is gone). */
const MAX_ROUNDS = 3;

/** The publish could not start on the build host, or the host no longer has what it built. */
function needsRebuild(err: unknown): boolean {
  if (!(err instanceof ActivityFailure)) return false;
  const cause = err.cause;
  if (cause instanceof TimeoutFailure) return cause.timeoutType === 'SCHEDULE_TO_START';
  return cause instanceof ApplicationFailure && cause.type === ArtifactNotStagedError.name;
}

export async function manufacture(input: ManufactureInput): Promise<ManufactureResult> {
  const status: ManufactureStatus = { image: input.image, phase: 'building' };
  setHandler(manufactureStatusQuery, () => status);

  const buildQueue = input.buildQueue ?? POOLS.build.taskQueue;
  const { buildImage } = proxyActivities<BuildActivities>({
    taskQueue: buildQueue,
    ...BUILD_TIMEOUTS,
    retry: {
      initialInterval: '10s',
      backoffCoefficient: 2,
      maximumAttempts: 3,
    },
  });
  const publisher = (taskQueue: string) =>
    proxyActivities<PublishActivities>({
      taskQueue,
      ...PUBLISH_TIMEOUTS,
      // Only a queue of one host can go unpolled for good; the shared build queue just waits.
      ...(taskQueue !== buildQueue ? { scheduleToStartTimeout: input.publishStartTimeout ?? PUBLISH_START_TIMEOUT } : {}),
      retry: {
        initialInterval: '5s',
        backoffCoefficient: 2,
        maximumInterval: '2m',
        maximumAttempts: 10,
      },
    }).publishBuild;

  try {
    // A build pool that is down fails the build in bounded time, naming what to start.
    await requirePool(buildQueue, input.poolWaitMs);
    for (let round = 1; ; round++) {
      status.phase = 'building';
      const built = await buildImage({ planDigest: input.planDigest, lockDigest: input.lockDigest, scratch: input.scratch, specDigest: input.specDigest });
      status.phase = 'publishing';
      let published: PublishBuildResult;
      try {
        published = await publisher(built.publishQueue ?? buildQueue)({
          image: built.image,
          manifestDigest: built.manifestDigest,
          lockBlob: built.lockBlob,
          specDigest: input.specDigest ?? input.planDigest,
          mirror: built.mirror,
          securityMirror: built.securityMirror,
          scratch: input.scratch,
        });
      } catch (err) {
        if (round < MAX_ROUNDS && needsRebuild(err)) {
          log.warn('the build host cannot publish what it built; building again', { round, publishQueue: built.publishQueue });
          continue;
        }
        throw err;
      }
      const where = new Map(published.artifacts.map((a) => [a.sha256, a.location]));
      status.phase = 'done';
      return {
        ...built,
        artifacts: built.artifacts.map((a) => ({ ...a, location: where.get(a.sha256) ?? a.location })),
        publicationDigest: published.publicationDigest,
        publicationRef: published.ref,
        publicationReused: published.reused,
      };
    }
  } catch (err) {
    status.phase = 'failed';
    status.error = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
    throw err;
  }
}
