/**
 * The one deploy path: manufacture → publish → pin → roll out. `kubedos deploy`/`up` start
 * `deployPlatform`; the nightly `rebuildHerd` runs the same steps through `rollOutImages`, so
 * what a herd rebuild deploys is pinned exactly like what a person deploys, and gc keeps it.
 *
 * 1. Each image whose fleets need bytes is manufactured (a child `manufacture` run: build, then
 *    publish from the build host) — a build whose inputs did not change is found and skipped.
 *    Images of fleets that need no bytes (hollow) are named by their staged plan's digest.
 * 2. Each publication is pinned for every fleet that will run it (`fleet/<platform>/<fleet>`).
 * 3. Each fleet gets the image: a running fleet by the deploy signal (with the spec's current
 *    settings and replica count when given), a missing one started as a child that outlives this
 *    run (when `startMissing`); then this run waits for each fleet's rollout outcome, which the
 *    fleet signals back (completed, rolled back, aborted, unchanged or refused).
 */
import {
  ChildWorkflowCancellationType,
  condition,
  defineQuery,
  executeChild,
  getExternalWorkflowHandle,
  ParentClosePolicy,
  proxyActivities,
  setHandler,
  startChild,
  workflowInfo,
} from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { PublishActivities } from '../activities/publish';
import { POOLS } from '../src/pools/pools';
import {
  deploySignal,
  fleetPinReason,
  fleetWorkflowId,
  rolloutFinishedSignal,
  type FleetInput,
  type FleetTemplate,
  type ImageRef,
  type RolloutFinished,
} from './fleet-api';
import type { ManufactureInput, ManufactureResult } from './manufacture';
import { fleetAttributes } from './search';

/** One fleet to roll onto an image. */
export interface RollOutFleet {
  fleet: string;
  /**
   * The fleet as the spec has it now (target, settings, replicas): applied to a running fleet's
   * new nodes, and what a missing fleet is started with. Absent: a running fleet keeps its own
   * settings, and a fleet that is not running is left alone (rebuildHerd from a schedule).
   */
  spec?: FleetTemplate & { replicas: number };
}

export interface RollOutImage {
  image: string;
  /** Staged plan (and lock) to manufacture; absent when no fleet of it needs bytes. */
  manufacture?: ManufactureInput;
  /** The image's digest when it is not manufactured: its staged plan's (hollow nodes). */
  digest?: string;
  fleets: RollOutFleet[];
}

export interface RollOutInput {
  platform: string;
  images: RollOutImage[];
  /** Start fleets that are not running (deploy); otherwise report them `not-running` (rebuildHerd). */
  startMissing: boolean;
  /** How long to wait for each fleet's rollout. @default 6 hours */
  rolloutTimeoutMs?: number;
  /** Queue of the build pool when not the default (the pin runs there, beside the store). */
  buildQueue?: string;
}

export type FleetOutcome = RolloutFinished['outcome'] | 'not-running' | 'timed-out';

export interface RolledOutFleet {
  fleet: string;
  image: string;
  digest: string;
  outcome: FleetOutcome;
  /** Whether this run started the fleet's controller. */
  started?: boolean;
  error?: string;
}

export interface RolledOutImage {
  image: string;
  /** The signed publication's digest, or the plan digest for images that need no bytes. */
  digest: string;
  /** Present when manufactured: whether the publication already existed. */
  reused?: boolean;
  pinned: string[];
}

export interface RollOutResult {
  images: RolledOutImage[];
  fleets: RolledOutFleet[];
}

export type RollOutPhase = 'manufacturing' | 'pinning' | 'rolling-out' | 'done';

export interface RollOutStatus {
  phase: RollOutPhase;
  images: { image: string; state: 'queued' | 'manufacturing' | 'pinned' | 'ready'; digest?: string }[];
  fleets: RolledOutFleet[];
}

export const rollOutStatusQuery = defineQuery<RollOutStatus>('rollOutStatus');

/** The steps, shared by deployPlatform and rebuildHerd. */
export async function rollOutImages(input: RollOutInput): Promise<RollOutResult> {
  const me = workflowInfo().workflowId;
  const finished = new Map<string, RolloutFinished>();
  setHandler(rolloutFinishedSignal, (f) => void finished.set(f.fleet, f));
  const status: RollOutStatus = { phase: 'manufacturing', images: input.images.map((i) => ({ image: i.image, state: 'queued' })), fleets: [] };
  setHandler(rollOutStatusQuery, () => status);

  // The pin runs on the build pool (it has the store), on the queue the image was built on.
  const pinner = (buildQueue: string | undefined) =>
    proxyActivities<PublishActivities>({
      taskQueue: buildQueue ?? input.buildQueue ?? POOLS.build.taskQueue,
      startToCloseTimeout: '5m',
      retry: { initialInterval: '2s', maximumInterval: '1m', maximumAttempts: 10 },
    }).pinPublication;

  // 1 + 2: manufacture and pin, every image in parallel (the build pool decides how many at once).
  const images = await Promise.all(
    input.images.map(async (img, i): Promise<RolledOutImage> => {
      const shown = status.images[i]!;
      if (!img.manufacture) {
        Object.assign(shown, { state: 'ready', digest: img.digest });
        return { image: img.image, digest: img.digest!, pinned: [] };
      }
      shown.state = 'manufacturing';
      const built = await executeChild<(m: ManufactureInput) => Promise<ManufactureResult>>('manufacture', {
        workflowId: `${me}/manufacture/${img.image}`,
        args: [img.manufacture],
      });
      const reasons = img.fleets.map((f) => fleetPinReason(input.platform, f.fleet));
      if (reasons.length) await pinner(img.manufacture.buildQueue)({ digest: built.publicationDigest, reasons });
      Object.assign(shown, { state: 'pinned', digest: built.publicationDigest });
      return { image: img.image, digest: built.publicationDigest, reused: built.publicationReused, pinned: reasons };
    }),
  );

  // 3: hand each fleet its image, then wait for the outcomes the fleets signal back.
  status.phase = 'rolling-out';
  for (const [i, img] of input.images.entries()) {
    const ref: ImageRef = { name: img.image, digest: images[i]!.digest };
    for (const f of img.fleets) {
      const fleet = await deliver(input, ref, f, me);
      status.fleets.push(fleet);
    }
  }
  const waiting = status.fleets.filter((f) => f.outcome === 'timed-out');
  await condition(() => waiting.every((f) => finished.has(f.fleet)), input.rolloutTimeoutMs ?? 6 * 3600_000);
  for (const f of waiting) {
    const done = finished.get(f.fleet);
    if (done) Object.assign(f, { outcome: done.outcome, ...(done.error ? { error: done.error } : {}) });
  }
  status.phase = 'done';
  return { images, fleets: status.fleets };
}

/** Give one fleet its image: signal it, or start it; `timed-out` until its outcome arrives. */
async function deliver(input: RollOutInput, image: ImageRef, f: RollOutFleet, me: string): Promise<RolledOutFleet> {
  const workflowId = fleetWorkflowId(input.platform, f.fleet);
  const pending: RolledOutFleet = { fleet: f.fleet, image: image.name, digest: image.digest, outcome: 'timed-out' };
  if (f.spec && input.startMissing) {
    const { replicas, ...template } = f.spec;
    const fleetInput: FleetInput = { ...template, image, replicas, notify: me };
    try {
      await startChild('fleet', {
        workflowId,
        args: [fleetInput],
        // The fleet is the long-lived controller; this run only started it.
        parentClosePolicy: ParentClosePolicy.ABANDON,
        cancellationType: ChildWorkflowCancellationType.ABANDON,
        typedSearchAttributes: fleetAttributes(f.fleet, image.name, template.target.name, 'starting'),
      });
      return { ...pending, started: true };
    } catch (err) {
      if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
    }
  }
  try {
    await getExternalWorkflowHandle(workflowId).signal(deploySignal, {
      image,
      notify: me,
      ...(f.spec ? { template: withoutReplicas(f.spec), replicas: f.spec.replicas } : {}),
    });
    return pending;
  } catch {
    // Not running: `kubedos deploy` starts it (startMissing); a herd rebuild leaves it alone.
    return { ...pending, outcome: 'not-running' };
  }
}

function withoutReplicas(spec: FleetTemplate & { replicas: number }): FleetTemplate {
  const { replicas: _replicas, ...template } = spec;
  return template;
}

/** `kubedos deploy` and `up`: the steps above, starting fleets that are not running. */
export async function deployPlatform(input: Omit<RollOutInput, 'startMissing'>): Promise<RollOutResult> {
  return rollOutImages({ ...input, startMissing: true });
}
