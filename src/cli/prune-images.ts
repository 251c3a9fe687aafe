/**
 * `kubedos down --prune-images`: once the fleets are down, each of their targets whose driver
 * keeps prepared images that cost money where they are (cloud images and their snapshots) removes
 * those no node uses any more (`TargetDriver.pruneImages`). It runs here, with this machine's
 * credentials for the target (the same standard sources the cloud worker uses); targets whose
 * drivers keep nothing worth pruning are skipped.
 */
import type { Spec } from '../platform/types';
import { createDriver } from '../targets';
import type { PrunedImages } from '../targets/driver';

export interface TargetPrune extends PrunedImages {
  target: string;
}

/** Prune the prepared images of the targets the given fleets run on. */
export async function pruneFleetImages(spec: Spec, fleets: readonly string[]): Promise<TargetPrune[]> {
  const targets = [...new Set(fleets.map((f) => spec.fleets[f]!.target))].sort();
  const out: TargetPrune[] = [];
  for (const name of targets) {
    const driver = await createDriver(name, spec.targets[name]!);
    try {
      if (!driver.pruneImages) continue;
      out.push({ target: name, ...(await driver.pruneImages({})) });
    } finally {
      await driver.close?.();
    }
  }
  return out;
}

/** Lines for the terminal. */
export function renderPrune(results: readonly TargetPrune[]): string[] {
  return results.flatMap((r) => [
    ...r.removed.map((what) => `${r.target}: removed ${what}`),
    ...r.kept.map((what) => `${r.target}: kept ${what}`),
    ...(r.removed.length + r.kept.length === 0 ? [`${r.target}: no prepared images to prune`] : []),
  ]);
}
