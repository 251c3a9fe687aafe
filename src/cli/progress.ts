/**
 * A progress bar on stderr fed by polling a workflow query; silent when stderr is not a TTY or
 * output is JSON, so logs and pipes stay clean.
 */
import { SingleBar, Presets } from 'cli-progress';
import type { WorkflowHandle } from '@temporalio/client';

export interface Progress {
  done: number;
  total: number;
  label?: string;
}

/** Poll `queryName` every intervalMs while `until` is pending, rendering done/total. */
export async function withQueryProgress<T>(
  handle: WorkflowHandle,
  queryName: string,
  toProgress: (state: unknown) => Progress,
  until: Promise<T>,
  options: { enabled: boolean; intervalMs?: number; title: string },
): Promise<T> {
  if (!options.enabled || !process.stderr.isTTY) return until;
  const bar = new SingleBar(
    { format: `${options.title} [{bar}] {value}/{total} {label}`, stream: process.stderr, hideCursor: true, clearOnComplete: true },
    Presets.shades_classic,
  );
  bar.start(1, 0, { label: '' });
  let stopped = false;
  const poll = async () => {
    while (!stopped) {
      try {
        const p = toProgress(await handle.query(queryName));
        bar.setTotal(Math.max(p.total, 1));
        bar.update(p.done, { label: p.label ?? '' });
      } catch {
        /* the workflow may not have started its first task yet */
      }
      await new Promise((r) => setTimeout(r, options.intervalMs ?? 250));
    }
  };
  const poller = poll();
  try {
    return await until;
  } finally {
    stopped = true;
    await poller;
    bar.stop();
  }
}
