/**
 * Boot media in QEMU (TCG) and watch the serial console: wait for lines, type into boot menus,
 * wait for the guest to power off. The console is read from QEMU's log of the serial port; typing
 * goes through a Unix socket whose output is drained (a full socket would stall the log).
 */
import * as fs from 'node:fs/promises';
import * as net from 'node:net';
import * as path from 'node:path';
import { qemuMachine, type QemuMachineArgs } from '../../src/foundry/tools/qemu-system';

/** Console text without ANSI/VT100 escapes and carriage returns (d-i's newt screens, GRUB menus). */
export function plainConsole(raw: string): string {
  return raw
    .replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '')
    .replace(/\x1b[()][0-9A-Za-z]/g, '')
    .replace(/\r/g, '\n');
}

export interface Watch {
  /** Stop as soon as this holds for the (plain) console text. */
  until: (console: string) => boolean;
  timeoutMs: number;
  /** Type `keys` once `after` has appeared on the console. */
  type?: { after: string; keys: string };
  /** Give up early when the console has not grown for this long (a guest that stopped). */
  stallMs?: number;
}

export interface WatchResult {
  /** Plain console text. */
  console: string;
  ms: number;
  /** Whether `until` held. */
  matched: boolean;
  /** Whether QEMU exited on its own (guest powered off or rebooted: -no-reboot). */
  exited: boolean;
  /** When the keys were typed (ms after start). */
  typedAtMs?: number;
  /** Set when the watch gave up because the console stayed silent for `stallMs`. */
  stalled?: boolean;
}

/** OVMF firmware with a private copy of the variable store in `dir`. */
export async function ovmf(dir: string): Promise<{ ovmfCode: string; ovmfVars: string }> {
  const vars = path.join(dir, `OVMF_VARS-${Date.now()}.fd`);
  await fs.copyFile('/usr/share/OVMF/OVMF_VARS_4M.fd', vars);
  return { ovmfCode: '/usr/share/OVMF/OVMF_CODE_4M.fd', ovmfVars: vars };
}

/**
 * Boot `machine` (its serialLog and, when typing, serialSocket are set here under `dir`) and
 * watch the console. QEMU is stopped when `until` holds or the time is up; it is left to exit
 * by itself when the guest powers off.
 */
export async function bootAndWatch(dir: string, machine: Omit<QemuMachineArgs, 'serialLog' | 'serialSocket'>, watch: Watch): Promise<WatchResult> {
  const serialLog = path.join(dir, `serial-${Date.now()}.log`);
  const serialSocket = watch.type ? path.join(dir, `serial-${Date.now()}.sock`) : undefined;
  const abort = new AbortController();
  const started = Date.now();
  let exited = false;
  let failure: unknown;
  const qemu = qemuMachine({ ...machine, serialLog, serialSocket }, { signal: abort.signal }).then(
    () => {
      exited = true;
    },
    (err: unknown) => {
      exited = true;
      if (!abort.signal.aborted) failure = err;
    },
  );
  let socket: net.Socket | undefined;
  let typedAtMs: number | undefined;
  let text = '';
  let matched = false;
  let stalled = false;
  let grewAt = started;
  try {
    while (Date.now() - started < watch.timeoutMs) {
      const previous = text;
      text = plainConsole(await fs.readFile(serialLog, 'latin1').catch(() => ''));
      if (text.length !== previous.length) grewAt = Date.now();
      if (watch.until(text)) {
        matched = true;
        break;
      }
      if (exited) break;
      if (watch.stallMs !== undefined && Date.now() - grewAt > watch.stallMs) {
        stalled = true;
        break;
      }
      if (watch.type && typedAtMs === undefined && text.includes(watch.type.after)) {
        socket = net.connect(serialSocket!);
        socket.on('data', () => undefined);
        socket.on('error', () => undefined);
        await new Promise<void>((resolve, reject) => {
          socket!.once('connect', resolve);
          socket!.once('error', reject);
        });
        for (const ch of watch.type.keys) {
          socket.write(ch);
          await new Promise((r) => setTimeout(r, 150));
        }
        typedAtMs = Date.now() - started;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
    const ms = Date.now() - started;
    if (failure) throw failure;
    // QEMU may still be flushing the last lines when it exits.
    text = plainConsole(await fs.readFile(serialLog, 'latin1').catch(() => text));
    matched ||= watch.until(text);
    return { console: text, ms, matched, exited, typedAtMs, ...(stalled && !matched && { stalled }) };
  } finally {
    abort.abort();
    await qemu;
    socket?.destroy();
  }
}
