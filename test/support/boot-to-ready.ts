/** Boot a qcow2 under OVMF (this machine's accelerator, TCG here) until its console says `kubedos: ready <hostname>`. */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { bootAndWatch, ovmf } from './media-boot';

export interface BootOutcome {
  /** The serial console as read last (escapes removed). */
  log: string;
  /** From QEMU's start to the ready line (or to giving up). */
  ms: number;
  ready: boolean;
}

/**
 * The disk is booted as a snapshot: the artifact is never written. The limit is for a node that
 * will never be ready, not a speed check (bench/boot measures that): a boot took 230 s under TCG
 * with the other jest worker building images, too close to the old 240 s.
 */
export async function bootToReady(qcow2: string, hostname: string, timeoutMs = 10 * 60_000): Promise<BootOutcome> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-boot-'));
  const readyLine = `kubedos: ready ${hostname}`;
  try {
    const watched = await bootAndWatch(
      dir,
      { firmware: await ovmf(dir), disks: [{ file: qcow2, format: 'qcow2', snapshot: true }], boot: 'disk' },
      { until: (text) => text.split('\n').some((l) => l.replace(/^\[[^\]]*\]\s*/, '').startsWith(readyLine)), timeoutMs },
    );
    if (!watched.matched) console.log(watched.console.slice(-4000));
    return { log: watched.console, ms: watched.ms, ready: watched.matched };
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}
