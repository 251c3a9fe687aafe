/**
 * The manufacturing pipeline: plan → sealed, bootable, bit-identical disk images. A flat list of
 * steps, each logged and timed; the last one writes the manifest.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { BuildPlanError } from '../errors';
import { logger } from '../log';
import type { Artifact, BuildContext, BuildOptions } from './context';
import { step } from './context';
import { diskLayout, layerIds, partitionDisk, prepareBaseDisk } from './disk';
import { applyPayload } from './ext4';
import { resolveFormats, type OutputFormat } from './formats';
import { requireEarlyModules } from './initrd';
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
    ctx.artifacts.push(...(await produceAll(ctx, formats)).flat());
    const manifest = await step(ctx, 'writeManifest', writeManifest);
    const totalMs = Math.round(performance.now() - started);
    ctx.log.info({ ms: totalMs, ranMmdebstrap: ctx.ranMmdebstrap, inputDigest: ctx.inputDigest.slice(0, 16) }, 'image built');
    return { manifest, lock: ctx.lock!, ranMmdebstrap: ctx.ranMmdebstrap, timings: ctx.timings, totalMs };
  } finally {
    // A leftover work directory must never hide the build's own outcome.
    if (!options.keepWorkDir) await fs.rm(workDir, { recursive: true, force: true, maxRetries: 3 }).catch((err: unknown) => ctx.log.warn({ err, workDir }, 'work directory not removed'));
  }
}

/**
 * Formats only read the finished raw disk: produce them concurrently (qemu-img runs in its own
 * process while Node digests), artifacts in the plan's order. The first failure stops the others
 * and is what the build reports, once every format has stopped writing into the work directory.
 */
export async function produceAll(ctx: BuildContext, formats: readonly OutputFormat[]): Promise<Artifact[][]> {
  const stop = new AbortController();
  const outer = ctx.options.signal;
  const relay = () => stop.abort(outer?.reason);
  if (outer?.aborted) relay();
  outer?.addEventListener('abort', relay, { once: true });
  const formatCtx: BuildContext = { ...ctx, options: { ...ctx.options, signal: stop.signal } };
  let first: { error: unknown } | undefined;
  try {
    const results = await Promise.allSettled(
      formats.map((format) =>
        step(formatCtx, `produce-${format.name}`, async (c) => {
          if (format.earlyBoot) await requireEarlyModules(c, format.earlyBoot.modules, format.earlyBoot.purpose);
          return format.produce(c);
        }).catch((error: unknown) => {
          first ??= { error };
          stop.abort(error);
          throw error;
        }),
      ),
    );
    if (first) throw first.error;
    return results.map((r) => (r as PromiseFulfilledResult<Artifact[]>).value);
  } finally {
    outer?.removeEventListener('abort', relay);
  }
}
