/**
 * The manufacturing pipeline: plan → sealed, bootable, bit-identical disk images. A flat list of
 * steps, each logged and timed; the last one writes the manifest.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { BuildPlanError } from '../errors';
import { logger } from '../log';
import type { BuildContext, BuildOptions } from './context';
import { step } from './context';
import { diskLayout, layerIds, partitionDisk, prepareBaseDisk } from './disk';
import { applyPayload } from './ext4';
import { resolveFormats } from './formats';
import type { Lock } from './lock';
import { writeManifest, type BuildManifest } from './manifest';
import { inputDigest, validatePlan, type BuildPlan } from './plan';
import { resolvePackages } from './resolve';
import { prepareRootfs } from './rootfs';

export interface BuildResult {
  manifest: BuildManifest;
  /** The lock the image was built with (given, or resolved by this build). */
  lock: Lock;
  /** Whether mmdebstrap ran (false when the rootfs layer came from the cache). */
  ranMmdebstrap: boolean;
  /** Milliseconds per step. */
  timings: Record<string, number>;
  totalMs: number;
}

/** Manufacture the plan's image in every requested format. */
export async function buildImage(plan: BuildPlan, options: BuildOptions): Promise<BuildResult> {
  const problems = validatePlan(plan);
  if (problems.length > 0) throw new BuildPlanError(problems);
  const formats = resolveFormats(plan.formats);
  const started = performance.now();
  await fs.mkdir(options.cacheDir, { recursive: true });
  await fs.mkdir(options.outputDir, { recursive: true });
  const workDir = await fs.mkdtemp(path.join(options.cacheDir, 'work-'));
  const ctx: BuildContext = {
    plan, options, workDir, log: logger.child({ image: plan.image.name }), ranMmdebstrap: false,
    shared: new Map(), artifacts: [], timings: {},
  };
  try {
    await step(ctx, 'resolvePackages', resolvePackages);
    await step(ctx, 'prepareRootfs', prepareRootfs);
    ctx.inputDigest = inputDigest(plan, ctx.lockDigest!);
    const layout = diskLayout(plan.image.diskSizeBytes, ctx.inputDigest);
    const baseDisk = await step(ctx, 'prepareBaseDisk', prepareBaseDisk);
    ctx.rawDisk = await step(ctx, 'partitionDisk', (c) => partitionDisk(c, baseDisk, layout));
    await step(ctx, 'applyPayload', (c) => applyPayload(c, `${c.rawDisk}?offset=${layout.root.offset}`, layerIds(c.layer!.digest).rootFsUuid));
    // Formats only read the finished raw disk: produce them concurrently (qemu-img runs in its own
    // process while Node digests), then list artifacts in the plan's order.
    const produced = await Promise.all(formats.map((format) => step(ctx, `produce-${format.name}`, format.produce)));
    ctx.artifacts.push(...produced.flat());
    const manifest = await step(ctx, 'writeManifest', writeManifest);
    const totalMs = Math.round(performance.now() - started);
    ctx.log.info({ ms: totalMs, ranMmdebstrap: ctx.ranMmdebstrap, inputDigest: ctx.inputDigest.slice(0, 16) }, 'image built');
    return { manifest, lock: ctx.lock!, ranMmdebstrap: ctx.ranMmdebstrap, timings: ctx.timings, totalMs };
  } finally {
    if (!options.keepWorkDir) await fs.rm(workDir, { recursive: true, force: true });
  }
}
