/**
 * manufacture: one image from a stored plan (and lock) to published, recorded artifacts.
 * Everything large stays in the store; history carries digests, names and small records.
 */
import { defineQuery, proxyActivities, setHandler } from '@temporalio/workflow';
import type { BuildActivities, BuildImageInput, BuildImageResult } from '../activities/build';
import { POOLS } from '../src/pools/pools';

export interface ManufactureInput extends BuildImageInput {
  /** Image name, for status and search. */
  image: string;
  /** Queue of the build pool when not the default (site-specific or test queues). */
  buildQueue?: string;
}

export type ManufacturePhase = 'building' | 'done' | 'failed';

export interface ManufactureStatus {
  image: string;
  phase: ManufacturePhase;
  error?: string;
}

export const manufactureStatusQuery = defineQuery<ManufactureStatus>('manufactureStatus');

/** Errors that retrying cannot fix: bad input, a package nobody serves, tampered blobs. */
export const NON_RETRYABLE_BUILD_ERRORS = [
  'BuildPlanError',
  'ConfigError',
  'LockedPackageUnavailableError',
  'DigestMismatchError',
  'StoreError',
];

export async function manufacture(input: ManufactureInput): Promise<BuildImageResult> {
  const status: ManufactureStatus = { image: input.image, phase: 'building' };
  setHandler(manufactureStatusQuery, () => status);

  const { buildImage } = proxyActivities<BuildActivities>({
    taskQueue: input.buildQueue ?? POOLS.build.taskQueue,
    // A cold build (mmdebstrap, dpkg, images) takes minutes; heartbeats every few seconds
    // show that it is alive, so a dead worker is noticed within heartbeatTimeout.
    startToCloseTimeout: '2h',
    heartbeatTimeout: '2m',
    retry: {
      initialInterval: '10s',
      backoffCoefficient: 2,
      maximumAttempts: 3,
      nonRetryableErrorTypes: NON_RETRYABLE_BUILD_ERRORS,
    },
  });

  try {
    const result = await buildImage({ planDigest: input.planDigest, lockDigest: input.lockDigest, scratch: input.scratch, specDigest: input.specDigest });
    status.phase = 'done';
    return result;
  } catch (err) {
    status.phase = 'failed';
    status.error = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
    throw err;
  }
}
