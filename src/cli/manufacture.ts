/**
 * Client side of manufacturing, shared by `build`, `lock`, `verify` (and later `up`): turn a spec
 * into stored plans, start one manufacture workflow per image, follow them, update kubedos.lock.
 */
import type { Client, WorkflowHandle } from '@temporalio/client';
import type { BuildHeartbeat, BuildImageResult } from '../../activities/build';
import type { ManufactureInput, manufacture } from '../../workflows/manufacture';
import { lockDigest, parseLock, serializeLock } from '../foundry/lock';
import { planFromSpec, serializePlan } from '../foundry/from-spec';
import { ConfigError } from '../errors';
import { POOLS } from '../pools/pools';
import { readLockFile, usableLock, writeLockFile, type LockFile } from '../platform/lock-file';
import { specDigest } from '../platform/digest';
import type { Spec } from '../platform/types';
import type { ArtifactStore } from '../store/store';
import { workflowUiLink, type ConnectionSettings } from '../temporal/connection';
import { note } from './output';

export interface ManufactureRequest {
  image: string;
  input: ManufactureInput;
  workflowId: string;
  /** Engine steps this build will report (for progress). */
  totalSteps: number;
}

export interface ManufactureOptions {
  images?: string[];
  formats?: string[];
  /** Re-resolve packages against the mirror instead of using kubedos.lock. */
  ignoreLock?: boolean;
  /** Rebuild from empty caches without recording the result (verify). */
  scratch?: boolean;
}

/** The epoch: the spec's, else the lock's, else (first lock only) now — then it is in the lock. */
export function chooseEpoch(spec: Spec, lockFile?: LockFile): number {
  return spec.base.sourceDateEpoch ?? lockFile?.sourceDateEpoch ?? Math.floor(Date.now() / 1000);
}

/** Store each image's plan (and lock) and describe the workflows to start. */
export async function stageRequests(specFile: string, spec: Spec, store: ArtifactStore, options: ManufactureOptions): Promise<ManufactureRequest[]> {
  const images = options.images?.length ? options.images : Object.keys(spec.images);
  const unknown = images.filter((i) => !spec.images[i]);
  if (unknown.length) {
    throw new ConfigError(`--image: no image named ${unknown.map((u) => `"${u}"`).join(', ')}`, `the spec defines ${Object.keys(spec.images).join(', ')}`);
  }
  const lockFile = readLockFile(specFile);
  const sourceDateEpoch = chooseEpoch(spec, lockFile);
  const specHash = specDigest(spec);
  const requests: ManufactureRequest[] = [];
  for (const image of images) {
    const plan = planFromSpec(spec, image, { formats: options.formats, sourceDateEpoch });
    const planDigest = (await store.putBytes(serializePlan(plan))).sha256;
    const lock = options.ignoreLock ? undefined : usableLock(lockFile, image, plan.base);
    if (lockFile?.images[image] && !lock && !options.ignoreLock) note(`${image}: the package list changed since kubedos.lock was written; re-resolving`);
    const lockBlob = lock ? (await store.putBytes(serializeLock(lock))).sha256 : undefined;
    const tag = (lockBlob ?? 'unlocked').slice(0, 8);
    requests.push({
      image,
      workflowId: `kubedos-${options.scratch ? 'verify' : 'manufacture'}-${image}-${planDigest.slice(0, 12)}-${tag}`,
      input: { image, planDigest, lockDigest: lockBlob, scratch: options.scratch, specDigest: specHash },
      totalSteps: 5 + plan.formats.length,
    });
  }
  return requests;
}

/** Start (or attach to an identical running) manufacture workflow per request. */
export async function startManufacture(client: Client, settings: ConnectionSettings, requests: ManufactureRequest[]): Promise<WorkflowHandle<typeof manufacture>[]> {
  return Promise.all(
    requests.map(async (r) => {
      const handle = await client.workflow.start<typeof manufacture>('manufacture', {
        taskQueue: POOLS.control.taskQueue,
        workflowId: r.workflowId,
        args: [r.input],
        // The same plan already building: follow that run instead of starting a second one.
        workflowIdConflictPolicy: 'USE_EXISTING',
      });
      const link = workflowUiLink(settings, r.workflowId);
      note(`${r.image}: workflow ${r.workflowId}${link ? `: ${link}` : ''}`);
      return handle;
    }),
  );
}

/** The current heartbeat of a build, read from the workflow's pending activity. */
export async function buildProgress(client: Client, handle: WorkflowHandle): Promise<BuildHeartbeat | undefined> {
  const { raw } = await handle.describe();
  const payload = raw.pendingActivities?.[0]?.heartbeatDetails?.payloads?.[0];
  if (!payload) return undefined;
  return client.options.loadedDataConverter.payloadConverter.fromPayload<BuildHeartbeat>(payload);
}

/** Record every newly resolved lock in kubedos.lock; returns the path when it changed. */
export async function updateLockFile(specFile: string, spec: Spec, store: ArtifactStore, results: BuildImageResult[]): Promise<string | undefined> {
  const current = readLockFile(specFile);
  const next: LockFile = { lockVersion: 1, sourceDateEpoch: chooseEpoch(spec, current), images: { ...(current?.images ?? {}) } };
  let changed = !current || current.sourceDateEpoch !== next.sourceDateEpoch;
  for (const r of results) {
    const lock = parseLock((await store.getBytes(r.lockBlob)).toString('utf8'));
    const before = current?.images[r.image];
    if (!before || lockDigest(before) !== lockDigest(lock)) {
      next.images[r.image] = lock;
      changed = true;
    }
  }
  return changed ? writeLockFile(specFile, next) : undefined;
}

/** Wait for every build, showing each one's current step on a TTY (stderr). */
export async function followBuilds(
  client: Client,
  handles: WorkflowHandle<typeof manufacture>[],
  requests: ManufactureRequest[],
  options: { progress: boolean },
): Promise<BuildImageResult[]> {
  const all = Promise.all(handles.map((h) => h.result()));
  if (!options.progress || !process.stderr.isTTY) return all;
  const { MultiBar, Presets } = await import('cli-progress');
  const bars = new MultiBar({ format: '{image} [{bar}] {value}/{total} {step}', stream: process.stderr, hideCursor: true, clearOnComplete: true }, Presets.shades_classic);
  const rows = requests.map((r) => bars.create(r.totalSteps, 0, { image: r.image.padEnd(12), step: 'queued' }));
  let done = false;
  const poll = (async () => {
    while (!done) {
      await Promise.all(
        handles.map(async (h, i) => {
          const beat = await buildProgress(client, h).catch(() => undefined);
          if (beat) rows[i]!.update(beat.completed.length, { step: beat.step });
        }),
      );
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  try {
    return await all;
  } finally {
    done = true;
    await poll;
    bars.stop();
  }
}
