/**
 * bench/boot: where a quickstart node's boot goes, under this machine's accelerator (TCG here).
 * Prints figures; it is not a test.
 *
 *   npx ts-node --transpile-only bench/boot.ts [runs=1]
 *
 * The quickstart worker (bench/quickstart-plan.ts, qcow2) is built once into the shared test image
 * cache, then booted `runs` times through the real QEMU driver (prepare → create with a generated
 * identity in its NoCloud seed → start), one node at a time. The console log is read every 20 ms
 * and each new line is stamped with the host clock; the kernel's own `[ seconds ]` prefixes place
 * the kernel's start on the host clock (the smallest host-minus-kernel difference over its lines),
 * so firmware time is measured even though the firmware prints nothing. Phases:
 *
 *   firmware        QEMU start → kernel start (OVMF, the UKI's systemd-stub)
 *   kernel          → `Run /init as init process` (kernel ts)
 *   initramfs       → systemd in the real root (`Welcome to` / `running in system mode`)
 *   basic           → `Reached target … Basic System`
 *   multi-user      → `Reached target … Multi-User System`
 *   identity        QEMU start → `kubedos: firstboot done` (the seed's identity applied)
 *   ready           QEMU start → `kubedos: ready <hostname>`
 *
 * A marker the console did not show prints as "not seen". Each row names the accelerator the driver
 * chose and the load average.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { sha256OfFile } from '../src/store/transfer';
import { consoleReady, generateIdentity } from '../src/targets/identity';
import { QemuDriver } from '../src/targets/qemu/driver';
import { qemu, type QemuTargetSpec } from '../src/targets/qemu';
import { builtImage } from '../test/support/images';
import { plainConsole } from '../test/support/media-boot';
import { quickstartPlan } from './quickstart-plan';

process.env.KUBEDOS_LOG_LEVEL ??= 'warn';

const TIMEOUT_MS = 600_000;

interface StampedLine { hostMs: number; text: string; kernelS?: number }

const MARKS = {
  initramfs: /Run \/init as init process/,
  systemd: /Welcome to .*Debian|systemd\[1\]: .*running in system mode|systemd \d+ running in system mode/,
  basic: /Reached target .*Basic System/,
  multiUser: /Reached target .*Multi-User System/,
  identity: /kubedos: firstboot done/,
} as const;

const load = () => os.loadavg().map((l) => l.toFixed(2)).join(' ');

/**
 * Follow a growing file, stamping each line with the host time it was first seen; once a line
 * satisfies `last`, keep reading until `trailing` went by too or `lingerMs` passed (systemd's
 * status lines may trail the ready line), then return.
 */
async function followConsole(file: string, t0: number, last: (line: string) => boolean, trailing: RegExp, lingerMs: number): Promise<StampedLine[]> {
  const lines: StampedLine[] = [];
  let offset = 0;
  let partial = '';
  let stopAt: number | undefined;
  for (;;) {
    const buf = await fs.readFile(file).catch(() => Buffer.alloc(0));
    if (buf.length > offset) {
      const now = Date.now() - t0;
      const parts = (partial + buf.subarray(offset).toString('utf8')).split('\n');
      offset = buf.length;
      partial = parts.pop() ?? '';
      for (const text of parts.flatMap((raw) => plainConsole(raw).split('\n')).filter((t) => t !== '')) {
        const ts = /^\[\s*(\d+\.\d+)\]/.exec(text);
        lines.push({ hostMs: now, text, kernelS: ts ? Number(ts[1]) : undefined });
        if (stopAt === undefined && last(text)) stopAt = Date.now() + lingerMs;
      }
    }
    if (stopAt !== undefined && (Date.now() >= stopAt || lines.some((l) => trailing.test(l.text)))) return lines;
    if (Date.now() - t0 > TIMEOUT_MS) throw new Error(`no ready line within ${TIMEOUT_MS / 1000} s; last lines:\n${lines.slice(-20).map((l) => l.text).join('\n')}`);
    await sleep(20);
  }
}

function breakdown(lines: StampedLine[]): Record<string, string> {
  const withTs = lines.filter((l) => l.kernelS !== undefined);
  // Host time (ms since QEMU start) at which the kernel's clock read 0: a line is printed no
  // earlier than its timestamp, so the smallest difference is the best estimate.
  const kernelStart = withTs.length ? Math.min(...withTs.map((l) => l.hostMs - l.kernelS! * 1000)) : undefined;
  const at = (re: RegExp): number | undefined => {
    const l = lines.find((x) => re.test(x.text));
    if (!l) return undefined;
    return l.kernelS !== undefined && kernelStart !== undefined ? kernelStart + l.kernelS * 1000 : l.hostMs;
  };
  const marks = {
    kernel: kernelStart,
    initramfs: at(MARKS.initramfs),
    systemd: at(MARKS.systemd),
    basic: at(MARKS.basic),
    multiUser: at(MARKS.multiUser),
    identity: at(MARKS.identity),
    ready: lines.find((l) => /kubedos: ready /.test(l.text))?.hostMs,
  };
  const span = (from: number | undefined, to: number | undefined) => (from !== undefined && to !== undefined ? `${((to - from) / 1000).toFixed(1)} s` : 'not seen');
  return {
    firmware: span(0, marks.kernel),
    kernel: span(marks.kernel, marks.initramfs),
    initramfs: span(marks.initramfs, marks.systemd),
    basic: span(marks.systemd, marks.basic),
    multiUser: span(marks.basic, marks.multiUser),
    identityAt: span(0, marks.identity),
    readyAt: span(0, marks.ready),
  };
}

async function bootOnce(driver: QemuDriver, stateDir: string, image: Awaited<ReturnType<QemuDriver['prepare']>>, digest: string, run: number): Promise<Record<string, string>> {
  const nodeId = `bench-boot-${run}`;
  const hostname = `bench-boot-${run}`;
  const identity = generateIdentity(hostname);
  await driver.create({ nodeId, labels: { platform: 'bench', fleet: 'boot', generation: 1, image: 'quickstart-worker', imageDigest: digest }, image, identity, authorizedKeys: [] }, {});
  const before = load();
  const consoleLog = path.join(stateDir, 'nodes', nodeId, 'console.log');
  const t0 = Date.now();
  try {
    await driver.start(nodeId, {});
    const lines = await followConsole(consoleLog, t0, (l) => consoleReady(l, hostname), MARKS.multiUser, 20_000);
    const accel = (JSON.parse(await fs.readFile(path.join(stateDir, 'nodes', nodeId, 'vm.json'), 'utf8')) as { accel: string }).accel;
    const keyApplied = lines.some((l) => l.text.includes(identity.hostKeyFingerprint));
    return { run: String(run), accel, ...breakdown(lines), identityApplied: String(keyApplied), consoleLines: String(lines.length), load: `${before} → ${load()}` };
  } finally {
    // KUBEDOS_BENCH_CONSOLE=<dir> keeps each boot's console log there.
    const keep = process.env.KUBEDOS_BENCH_CONSOLE;
    if (keep) await fs.mkdir(keep, { recursive: true }).then(() => fs.copyFile(consoleLog, path.join(keep, `${nodeId}.console.log`))).catch(() => undefined);
    await driver.destroy(nodeId, {});
  }
}

async function main(): Promise<void> {
  const runs = Number(process.argv[2] ?? 1);
  const built = await builtImage(quickstartPlan(undefined, ['qcow2']));
  const qcow2 = built.artifacts.qcow2!;
  const { sha256, size } = await sha256OfFile(qcow2);
  const stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-bench-boot-'));
  const spec: QemuTargetSpec = qemu.schema.parse({ type: 'qemu' });
  const driver = new QemuDriver('bench', spec, { stateDir });
  try {
    const image = await driver.prepare({ name: 'quickstart-worker', digest: sha256, artifact: { format: 'qcow2', sha256, size, path: qcow2 } }, {});
    console.error(`image ${path.basename(qcow2)} ${sha256.slice(0, 16)}`);
    for (let i = 0; i < runs; i++) console.log(JSON.stringify(await bootOnce(driver, stateDir, image, sha256, i)));
  } finally {
    await driver.close();
    await fs.rm(stateDir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
