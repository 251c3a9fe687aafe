/** Boot a qcow2 under OVMF (this machine's accelerator, TCG here) until its console says `kubedos: ready <hostname>`. */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { bootAndWatch, ovmf, type WatchResult } from './media-boot';

export interface BootOutcome {
  /** The serial console as read last (escapes removed). */
  log: string;
  /** From QEMU's start to the ready line (or to giving up), of the boot that counted. */
  ms: number;
  ready: boolean;
  /** 1, or 2 when the first boot's kernel went silent before it started init (see below). */
  attempts: number;
  /** What to print when it is not ready: how it ended and the console's last lines. */
  report: string;
}

/**
 * The limit is for a node that will never be ready, not a speed check (bench/boot measures that):
 * a boot took 230 s under TCG with the other jest worker building images. The console is never
 * silent for more than ≈ 20 s in a boot at load 10, so 3 min of silence is a stopped guest.
 */
const BOOT_TIMEOUT_MS = 10 * 60_000;
const CONSOLE_STALL_MS = 3 * 60_000;

/** The kernel has handed over to userspace (the initramfs's init); a stop after this is the image's. */
const INIT_STARTED = /Run \/\S*init as init process/;

/**
 * The disk is booted as a snapshot: the artifact is never written. A boot whose kernel stops
 * before it runs init is booted once more, and says so: CI saw this emulator (QEMU 7.2, TCG)
 * leave a guest kernel silent for 10 min right after its x86/fpu setup, with the same image
 * ready in the next run. A stop after init has started is the image's and fails at once.
 */
export async function bootToReady(qcow2: string, hostname: string, timeoutMs = BOOT_TIMEOUT_MS): Promise<BootOutcome> {
  const first = await bootOnce(qcow2, hostname, timeoutMs);
  if (first.matched || !first.stalled || INIT_STARTED.test(first.console)) return outcome(first, 1);
  console.log(`the guest kernel went silent before init; booting once more. ${describe(first)}`);
  return outcome(await bootOnce(qcow2, hostname, timeoutMs), 2);
}

async function bootOnce(qcow2: string, hostname: string, timeoutMs: number): Promise<WatchResult> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-boot-'));
  const readyLine = `kubedos: ready ${hostname}`;
  try {
    return await bootAndWatch(
      dir,
      { firmware: await ovmf(dir), disks: [{ file: qcow2, format: 'qcow2', snapshot: true }], boot: 'disk' },
      { until: (text) => text.split('\n').some((l) => l.replace(/^\[[^\]]*\]\s*/, '').startsWith(readyLine)), timeoutMs, stallMs: CONSOLE_STALL_MS },
    );
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

function outcome(w: WatchResult, attempts: number): BootOutcome {
  return { log: w.console, ms: w.ms, ready: w.matched, attempts, report: w.matched ? `ready in ${w.ms} ms` : describe(w) };
}

function describe(w: WatchResult): string {
  const how = w.stalled ? `console silent for ${CONSOLE_STALL_MS / 1000} s` : w.exited ? 'QEMU exited' : 'time limit reached';
  const tail = w.console.split('\n').filter((l) => l.trim()).slice(-15).join('\n');
  return `not ready after ${w.ms} ms (${how}); the console's last lines:\n${tail}`;
}
