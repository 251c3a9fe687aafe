/**
 * Mutable state of one build, kept apart from the frozen plan. Steps read the plan and options
 * and record what they produced here; `step()` logs and times each one.
 */
import type { Logger } from '../log';
import type { Lock } from './lock';
import type { BuildPlan } from './plan';

export interface BuildOptions {
  /** Layer and filesystem caches live here (`layers/`, `ext4/`). */
  cacheDir: string;
  /** Content-addressed .deb cache (`<sha256>.deb`), shared between builds. */
  debCacheDir: string;
  /** Artifacts and the manifest are written here (atomically). */
  outputDir: string;
  /**
   * Install exactly this package set. Without it the base is first resolved against the mirror
   * (the result is the build's lock); both cases then install from the lock the same way.
   */
  lock?: Lock;
  /** Keep the work directory (for debugging). @default false */
  keepWorkDir?: boolean;
  signal?: AbortSignal;
  /** Called after each step with its name and duration (progress, heartbeats). */
  onStep?: (step: string, ms: number) => void;
}

/** One file produced by an output format. */
export interface Artifact {
  format: string;
  /** File name inside the output directory. */
  file: string;
  path: string;
  sha256: string;
  size: number;
}

/** A cached, normalised rootfs tree. */
export interface Layer {
  digest: string;
  dir: string;
  rootfs: string;
  kernel: string;
  initrd: string;
}

export interface BuildContext {
  readonly plan: BuildPlan;
  readonly options: BuildOptions;
  readonly log: Logger;
  /** Private scratch directory of this build. */
  readonly workDir: string;
  lock?: Lock;
  lockDigest?: string;
  layer?: Layer;
  /** Whether this build ran mmdebstrap (false on a layer cache hit). */
  ranMmdebstrap: boolean;
  inputDigest?: string;
  /** The assembled raw disk in the work directory; every format is made from it. */
  rawDisk?: string;
  /** Intermediate files shared between formats (e.g. the vmdk an ova embeds), as promises. */
  readonly shared: Map<string, Promise<string>>;
  artifacts: Artifact[];
  readonly timings: Record<string, number>;
}

/** Run one named step: log start and end, record its duration. */
export async function step<T>(ctx: BuildContext, name: string, fn: (ctx: BuildContext) => Promise<T>): Promise<T> {
  if (ctx.options.signal?.aborted) {
    const { CancelledError } = await import('../errors');
    throw new CancelledError(`build step ${name}`);
  }
  const started = performance.now();
  ctx.log.info({ step: name }, 'step started');
  const result = await fn(ctx);
  const ms = Math.round(performance.now() - started);
  ctx.timings[name] = (ctx.timings[name] ?? 0) + ms;
  ctx.log.info({ step: name, ms }, 'step finished');
  ctx.options.onStep?.(name, ms);
  return result;
}

/** One intermediate product of a build (a path), made once and shared between formats through `ctx.shared`. */
export function sharedOnce(ctx: BuildContext, key: string, make: () => Promise<string>): Promise<string> {
  let made = ctx.shared.get(key);
  if (!made) {
    made = make();
    ctx.shared.set(key, made);
  }
  return made;
}
