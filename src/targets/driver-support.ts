/**
 * What several target drivers need around their substrate calls, in one place (drivers never
 * import one another): progress reports while a long step runs, and bounded concurrency over a
 * list.
 */
import type { DriverContext } from './driver';

/**
 * How often a long step is reported again. Activities heartbeat from progress, and the create
 * activity's heartbeat timeout is 20 s: a step over SSH on a loaded host may take much longer.
 */
const PROGRESS_INTERVAL_MS = 5_000;

/** Run `fn`, reporting `step` at once and every few seconds until it settles. */
export async function reporting<T>(ctx: DriverContext, step: string, fn: () => Promise<T>): Promise<T> {
  ctx.progress?.({ step });
  const timer = setInterval(() => ctx.progress?.({ step }), PROGRESS_INTERVAL_MS);
  try {
    return await fn();
  } finally {
    clearInterval(timer);
  }
}

/** `fn` over `items`, at most `limit` at once; the results in the order of `items`. */
export async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
