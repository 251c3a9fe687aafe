/** Boot a qcow2 under OVMF (this machine's accelerator, TCG here) until its console says `kubedos: ready <hostname>`. */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { qemuMachine } from '../../src/foundry/tools/qemu-system';

export interface BootOutcome {
  /** The serial console as read last. */
  log: string;
  /** From QEMU's start to the ready line (or to giving up). */
  ms: number;
  ready: boolean;
}

/** The disk is booted as a snapshot: the artifact is never written. */
export async function bootToReady(qcow2: string, hostname: string, timeoutMs = 240_000): Promise<BootOutcome> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-boot-'));
  const vars = path.join(dir, 'OVMF_VARS.fd');
  await fs.copyFile('/usr/share/OVMF/OVMF_VARS_4M.fd', vars);
  const serial = path.join(dir, 'serial.log');
  const abort = new AbortController();
  const started = Date.now();
  const qemu = qemuMachine(
    {
      firmware: { ovmfCode: '/usr/share/OVMF/OVMF_CODE_4M.fd', ovmfVars: vars },
      disks: [{ file: qcow2, format: 'qcow2', snapshot: true }],
      boot: 'disk',
      serialLog: serial,
    },
    { signal: abort.signal },
  ).catch((err: unknown) => err);
  const readyLine = `kubedos: ready ${hostname}`;
  let log = '';
  let exited = false;
  void qemu.then(() => (exited = true));
  try {
    while (Date.now() - started < timeoutMs && !exited) {
      log = await fs.readFile(serial, 'utf8').catch(() => '');
      if (log.split('\n').some((l) => l.replace(/^\[[^\]]*\]\s*/, '').startsWith(readyLine))) break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    const ms = Date.now() - started;
    const ready = log.includes(readyLine);
    if (!ready) console.log(log.slice(-4000));
    return { log, ms, ready };
  } finally {
    abort.abort();
    await qemu;
    await fs.rm(dir, { recursive: true, force: true });
  }
}
