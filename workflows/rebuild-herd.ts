/**
 * rebuildHerd: the nightly "rebuild the herd". Manufacture every image of the platform (a build
 * whose inputs did not change finds its recorded result and is skipped), then roll every fleet
 * that runs an image onto the new publication and wait for each rollout's outcome. Fleets are
 * controllers of their own: they receive the new image as a signal, so a herd rebuild and a
 * hand-run deploy never fight over the same nodes.
 */
import { condition, executeChild, getExternalWorkflowHandle, setHandler, workflowInfo } from '@temporalio/workflow';
import { deploySignal, fleetWorkflowId, rolloutFinishedSignal, type RolloutFinished } from './fleet-api';
import type { ManufactureInput, ManufactureResult } from './manufacture';

export interface HerdImage {
  image: string;
  /** Staged plan and lock (the CLI stages them when the schedule is created). */
  manufacture: ManufactureInput;
  /** Fleets of the platform running this image. */
  fleets: string[];
}

export interface RebuildHerdInput {
  platform: string;
  images: HerdImage[];
  /** How long to wait for each fleet's rollout. @default 6 hours */
  rolloutTimeoutMs?: number;
}

export interface HerdFleetResult {
  fleet: string;
  image: string;
  digest: string;
  outcome: RolloutFinished['outcome'] | 'not-running' | 'timed-out';
  error?: string;
}

export interface RebuildHerdResult {
  images: { image: string; publicationDigest: string; reused: boolean }[];
  fleets: HerdFleetResult[];
}

export async function rebuildHerd(input: RebuildHerdInput): Promise<RebuildHerdResult> {
  const finished = new Map<string, RolloutFinished>();
  setHandler(rolloutFinishedSignal, (f) => void finished.set(f.fleet, f));
  const me = workflowInfo().workflowId;

  // Manufacture every image in parallel: the build pool decides how many run at once.
  const built = await Promise.all(
    input.images.map(async (img) => {
      const result = await executeChild<(i: ManufactureInput) => Promise<ManufactureResult>>('manufacture', {
        workflowId: `${me}/manufacture/${img.image}`,
        args: [img.manufacture],
      });
      return { img, result };
    }),
  );

  const fleets: HerdFleetResult[] = [];
  for (const { img, result } of built) {
    for (const fleet of img.fleets) {
      const digest = result.publicationDigest;
      try {
        await getExternalWorkflowHandle(fleetWorkflowId(input.platform, fleet)).signal(deploySignal, { image: { name: img.image, digest }, notify: me });
        fleets.push({ fleet, image: img.image, digest, outcome: 'timed-out' });
      } catch {
        // A fleet that is not deployed has nothing to roll; `kubedos deploy` starts it.
        fleets.push({ fleet, image: img.image, digest, outcome: 'not-running' });
      }
    }
  }
  const waiting = fleets.filter((f) => f.outcome === 'timed-out');
  await condition(() => waiting.every((f) => finished.has(f.fleet)), input.rolloutTimeoutMs ?? 6 * 3600_000);
  for (const f of waiting) {
    const done = finished.get(f.fleet);
    if (done) Object.assign(f, { outcome: done.outcome, error: done.error });
  }
  return {
    images: built.map(({ img, result }) => ({ image: img.image, publicationDigest: result.publicationDigest, reused: result.publicationReused })),
    fleets,
  };
}
