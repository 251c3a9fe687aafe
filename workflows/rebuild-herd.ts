/**
 * rebuildHerd: the nightly "rebuild the herd", started by a schedule. The same steps as
 * `kubedos deploy` (deploy-platform.ts: manufacture → publish → pin → roll out), for every fleet
 * of the schedule that is running: a build whose inputs did not change is found and skipped, and
 * a fleet already on the publication answers `unchanged`. Fleets are controllers of their own:
 * they receive the new image as a signal, so a herd rebuild and a hand-run deploy never fight
 * over the same nodes, and a fleet that is not running is reported, not started.
 */
import { rollOutImages, type FleetOutcome } from './deploy-platform';
import type { ManufactureInput } from './manufacture';

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
  outcome: FleetOutcome;
  error?: string;
}

export interface RebuildHerdResult {
  images: { image: string; publicationDigest: string; reused: boolean }[];
  fleets: HerdFleetResult[];
}

export async function rebuildHerd(input: RebuildHerdInput): Promise<RebuildHerdResult> {
  const result = await rollOutImages({
    platform: input.platform,
    images: input.images.map((img) => ({ image: img.image, manufacture: img.manufacture, fleets: img.fleets.map((fleet) => ({ fleet })) })),
    startMissing: false,
    rolloutTimeoutMs: input.rolloutTimeoutMs,
  });
  return {
    images: result.images.map((i) => ({ image: i.image, publicationDigest: i.digest, reused: i.reused ?? false })),
    fleets: result.fleets.map(({ started: _started, ...f }) => f),
  };
}
