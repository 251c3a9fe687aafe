/**
 * Boot a disk the way an EC2 Nitro instance presents it, as far as QEMU (TCG) can: UEFI (OVMF),
 * the disk behind an NVMe controller, SMBIOS system vendor "Amazon EC2", and IMDS at
 * 169.254.169.254 served by the IMDS STAND-IN (./imds-standin.cjs, IMDSv2 only) through QEMU's
 * guestfwd. No ENA (QEMU has no model of it): the NIC is virtio-net. Shared by
 * test/e2e/aws-boot.test.ts and bench/aws-boot.ts; records when each console mark first appeared.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { EC2_SYS_VENDOR } from '../../src/foundry/ec2-reader';
import { qemuMachine } from '../../src/foundry/tools/qemu-system';
import { ovmf, plainConsole } from './media-boot';

/** Console marks of an EC2 boot, in order. */
export const EC2_BOOT_MARKS = (hostname: string): Record<string, RegExp> => ({
  kernel: /Linux version/,
  nvme: /nvme0n1/,
  systemd: /systemd\[1\]: |Welcome to/,
  ec2Reader: /kubedos: metadata \/usr\/lib\/kubedos\/metadata\.d\/30-ec2/,
  ec2Applied: /kubedos: ec2: instance i-[0-9a-f]+ at /,
  firstbootDone: /kubedos: firstboot done/,
  ready: new RegExp(`^kubedos: ready ${hostname}$`, 'm'),
});

export interface Ec2BootResult {
  /** Wall ms from QEMU's start to the first appearance of each mark. */
  seen: Record<string, number>;
  console: string;
  /** What the IMDS stand-in was asked: `METHOD PATH token|no-token STATUS`. */
  requests: string[];
}

export async function bootLikeEc2(options: {
  disk: { file: string; format: 'raw' | 'qcow2' | 'vmdk' };
  /** The IMDS document (see imds-standin.cjs). */
  imds: Record<string, unknown>;
  dir: string;
  marks: Record<string, RegExp>;
  /** Stop once this mark is seen. */
  until: string;
  timeoutMs?: number;
}): Promise<Ec2BootResult> {
  const run = await fs.mkdtemp(path.join(options.dir, 'boot-'));
  const doc = path.join(run, 'imds.json');
  await fs.writeFile(doc, JSON.stringify(options.imds));
  const log = path.join(run, 'imds-requests.log');
  const token = randomBytes(24).toString('base64');
  const standIn = `${process.execPath} ${path.join(__dirname, 'imds-standin.cjs')} ${doc} ${token} ${log}`;
  const serialLog = path.join(run, 'serial.log');
  const abort = new AbortController();
  const started = Date.now();
  const qemu = qemuMachine(
    {
      firmware: await ovmf(run),
      disks: [{ ...options.disk, snapshot: true, bus: 'nvme' }],
      // The guestfwd address must lie inside the user network: 169.254.0.0/16 (on EC2 the IMDS address is link-local too).
      net: { network: '169.254.0.0/16', guestForwards: [{ address: '169.254.169.254', port: 80, command: standIn }] },
      smbios: [`type=1,manufacturer=${EC2_SYS_VENDOR},product=t3.small`],
      boot: 'disk',
      serialLog,
      memoryMiB: 1024,
      cpus: 2,
    },
    { signal: abort.signal },
  ).catch((err: unknown) => err);
  let exited = false;
  void qemu.then(() => (exited = true));
  const seen: Record<string, number> = {};
  let text = '';
  try {
    while (Date.now() - started < (options.timeoutMs ?? 600_000) && !exited) {
      text = plainConsole(await fs.readFile(serialLog, 'latin1').catch(() => ''));
      for (const [mark, re] of Object.entries(options.marks)) if (seen[mark] === undefined && re.test(text)) seen[mark] = Date.now() - started;
      if (seen[options.until] !== undefined) break;
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    abort.abort();
    await qemu;
  }
  const requests = (await fs.readFile(log, 'utf8').catch(() => '')).trim().split('\n').filter(Boolean);
  await fs.rm(run, { recursive: true, force: true });
  return { seen, console: text, requests };
}
