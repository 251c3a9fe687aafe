/**
 * bench/firecracker: what a microVM costs the Firecracker driver. Prints figures; not a test.
 *
 *   bench/firecracker [--sizes 10,100,1000] [--concurrency 32] [--skip-boot] [--skip-control] [--json]
 *
 * 1. Control cost, booting disabled: a test host (a network namespace with a real sshd, a real
 *    bridge and real taps, test/support/firecracker-host.ts) whose firecracker and jailer are the
 *    STAND-IN with InstanceStart starting no guest (flagged so in its log). For each size the real
 *    driver, over SSH, creates that many nodes (placement facts, jail of hard links, sparse ext4
 *    layer, MMDS document, node.json), starts them (tap, jailer, 9 API calls on the jail's socket
 *    by stream-local forwarding), lists them, and destroys them (SendCtrlAltDel, kill, tap, jail,
 *    state), `--concurrency` at a time. Per size: wall time and per-node p50/p99 of each step, API
 *    calls per node, the layer's allocated bytes, the stand-ins' memory, and how the per-node cost
 *    grows from one size to the next (1.0 = flat). The host reports REPORTED_CPUS CPUs to the
 *    driver's placement (so 1000 one-vCPU microVMs fit on this 2-CPU machine); nothing else.
 * 2. Real boot: 3 microVMs of the shared test image's Firecracker bundle on a host whose stand-in
 *    boots each under `qemu-system-x86_64 -M microvm` (TCG), from the start call to the console's
 *    `kubedos: ready <hostname>` (identity from MMDS), in parallel.
 *
 * Needs root (namespaces, taps) and scripts/setup --tests (the stand-in); part 2 builds the shared
 * test image if it is not cached (minutes, once).
 */
import { promises as fs, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TargetOf } from '../src/platform/types';
import type { NodeLabels, PreparedImage } from '../src/targets/driver';
import { FirecrackerDriver } from '../src/targets/firecracker/driver';
import { jailId } from '../src/targets/firecracker/names';
import { generateIdentity } from '../src/targets/identity';
import { bundleOf, smallBundle, type BundleArtifact } from '../test/support/firecracker-bundle';
import { sharedMount, startFirecrackerHost, type FirecrackerTestHost } from '../test/support/firecracker-host';
import { builtImage } from '../test/support/images';

const args = process.argv.slice(2);
const flag = (name: string) => args.includes(name);
const option = (name: string, fallback: string) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] ? args[i + 1]! : fallback;
};
const SIZES = option('--sizes', '10,100,1000').split(',').map(Number);
const CONCURRENCY = Number(option('--concurrency', '32'));
const MiB = 2 ** 20;
/**
 * The control-cost host reports this many CPUs to placement (nproc): 1000 one-vCPU microVMs do not
 * fit on 2 CPUs at the largest allowed oversubscription (64), and the benchmark measures the
 * control path, not the host's size. Printed with the figures.
 */
const REPORTED_CPUS = 64;
const log = (line: string) => process.stderr.write(`${line}\n`);

function spec(h: FirecrackerTestHost, overrides: Partial<TargetOf<'firecracker'>> = {}): TargetOf<'firecracker'> {
  return {
    type: 'firecracker',
    hosts: [h.connection()],
    firecracker: h.firecracker,
    jailer: h.jailer,
    chrootBase: h.chrootBase,
    uid: 10_000,
    gid: 10_000,
    cgroupVersion: 2,
    network: { bridge: h.bridge },
    // The benchmark measures the control path, not the host's size: no limit but the count.
    limits: { maxMicrovms: 100_000, cpuOversubscription: 64, memoryOversubscription: 64 },
    layerSize: 4096 * MiB,
    memory: 128 * MiB,
    cpus: 1,
    ...overrides,
  } as TargetOf<'firecracker'>;
}

async function timedAll<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<unknown>): Promise<number[]> {
  const ms: number[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      const t = performance.now();
      await fn(items[i]!);
      ms[i] = performance.now() - t;
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return ms;
}

function pct(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

function memoryOf(pids: number[]): { rssMiB: number; pssMiB: number } {
  let rss = 0;
  let pss = 0;
  for (const pid of pids) {
    try {
      rss += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
      pss += Number(/Pss:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0);
    } catch {
      /* gone */
    }
  }
  return { rssMiB: rss / 1024, pssMiB: pss / 1024 };
}

interface SizeResult {
  nodes: number;
  wallMs: { create: number; start: number; list: number; destroy: number };
  perNodeMs: Record<'create' | 'start' | 'destroy', { p50: number; p99: number }>;
  apiCallsPerNode: number;
  layerAllocatedKiB: { mean: number; max: number };
  standinMemoryMiB: { rssPerProcess: number; pssPerProcess: number; pssTotal: number };
  taps: number;
  leftAfterDestroy: { processes: number; taps: number };
}

async function controlCost(): Promise<SizeResult[]> {
  const mount = sharedMount();
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-bench-fc-'));
  const host = await startFirecrackerHost(mount, { boot: false, reportedCpus: REPORTED_CPUS }).catch(async (err: unknown) => {
    await fs.rm(mount, { recursive: true, force: true });
    await fs.rm(tmp, { recursive: true, force: true });
    throw err;
  });
  const results: SizeResult[] = [];
  try {
    const driver = new FirecrackerDriver('bench', spec(host), { stateDir: path.join(tmp, 'state') }, { cgroupRoot: host.cgroupRoot });
    const bundle: BundleArtifact = await smallBundle(path.join(tmp, 'bundle'), 'qa-worker');
    const prepared: PreparedImage = await driver.prepare({ name: 'qa-worker', digest: 'a'.repeat(64), artifact: bundle }, {});
    for (const n of SIZES) {
      log(`control cost: ${n} microVMs (booting disabled), ${CONCURRENCY} at a time`);
      const ids = Array.from({ length: n }, (_, i) => `bench-${n}-${String(i + 1).padStart(4, '0')}`);
      const labels: NodeLabels = { platform: 'bench', fleet: `n${n}`, generation: 1, image: 'qa-worker', imageDigest: 'a'.repeat(64) };
      const callsBefore = host.apiCalls().length;
      let t = performance.now();
      const create = await timedAll(ids, CONCURRENCY, (id) => driver.create({ nodeId: id, labels, image: prepared, identity: generateIdentity(id), authorizedKeys: [] }, {}));
      const createWall = performance.now() - t;
      t = performance.now();
      const start = await timedAll(ids, CONCURRENCY, (id) => driver.start(id, {}));
      const startWall = performance.now() - t;
      t = performance.now();
      const listed = await driver.list({ fleet: `n${n}` }, {});
      const listWall = performance.now() - t;
      if (listed.length !== n || !listed.every((x) => x.running)) throw new Error(`list found ${listed.length} (${listed.filter((x) => x.running).length} running), expected ${n}`);
      const calls = host.apiCalls().slice(callsBefore);
      const procs = (await host.processes()).filter((p) => p.argv.some((a) => a.startsWith('--id=bench-')));
      const mem = memoryOf(procs.map((p) => p.pid));
      const layers = ids.map((id) => statSync(host.local(path.join(host.chrootBase, 'firecracker', jailId('bench', id), 'root', 'layer.ext4'))).blocks / 2);
      const taps = (await host.taps()).length;
      t = performance.now();
      const destroy = await timedAll(ids, CONCURRENCY, (id) => driver.destroy(id, {}));
      const destroyWall = performance.now() - t;
      const left = { processes: (await host.processes()).length, taps: (await host.taps()).length };
      results.push({
        nodes: n,
        wallMs: { create: createWall, start: startWall, list: listWall, destroy: destroyWall },
        perNodeMs: { create: { p50: pct(create, 50), p99: pct(create, 99) }, start: { p50: pct(start, 50), p99: pct(start, 99) }, destroy: { p50: pct(destroy, 50), p99: pct(destroy, 99) } },
        apiCallsPerNode: calls.length / n,
        layerAllocatedKiB: { mean: layers.reduce((a, b) => a + b, 0) / n, max: Math.max(...layers) },
        standinMemoryMiB: { rssPerProcess: mem.rssMiB / procs.length, pssPerProcess: mem.pssMiB / procs.length, pssTotal: mem.pssMiB },
        taps,
        leftAfterDestroy: left,
      });
      log(`  done: create ${(createWall / 1000).toFixed(1)} s, start ${(startWall / 1000).toFixed(1)} s, destroy ${(destroyWall / 1000).toFixed(1)} s`);
    }
    await driver.close();
  } finally {
    await host.stop();
    await fs.rm(mount, { recursive: true, force: true });
    await fs.rm(tmp, { recursive: true, force: true });
  }
  return results;
}

interface BootResult {
  readyMs: number[];
  wallMs: number;
  layerAllocatedMiB: number[];
  load: number[];
}

async function realBoot(): Promise<BootResult> {
  const mount = sharedMount();
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-bench-fc-boot-'));
  log('real boot: building or reusing the shared test image (firecracker bundle)');
  const started = startFirecrackerHost(mount, { boot: true });
  const [img, host] = await Promise.all([builtImage(), started]).catch(async (err: unknown) => {
    await (await started.catch(() => undefined))?.stop();
    await fs.rm(mount, { recursive: true, force: true });
    await fs.rm(tmp, { recursive: true, force: true });
    throw err;
  });
  try {
    const driver = new FirecrackerDriver('boot', spec(host, { memory: 512 * MiB, layerSize: 2048 * MiB }), { stateDir: path.join(tmp, 'state') }, { cgroupRoot: host.cgroupRoot });
    log('real boot: uploading the bundle to the host');
    const prepared = await driver.prepare({ name: img.manifest.image.name, digest: 'b'.repeat(64), artifact: bundleOf(img) }, {});
    const ids = [1, 2, 3].map((i) => `boot-qa-000${i}`);
    const labels: NodeLabels = { platform: 'bench', fleet: 'boot', generation: 1, image: img.manifest.image.name, imageDigest: 'b'.repeat(64) };
    for (const id of ids) await driver.create({ nodeId: id, labels, image: prepared, identity: generateIdentity(id), authorizedKeys: [] }, {});
    log('real boot: starting 3 microVMs under QEMU -M microvm (TCG)');
    const t0 = performance.now();
    const readyMs = await Promise.all(
      ids.map(async (id) => {
        await driver.start(id, {});
        const deadline = Date.now() + 20 * 60_000;
        while (!(await driver.readiness(id))) {
          if (Date.now() > deadline) throw new Error(`${id} not ready within 20 minutes`);
          await sleep(1000);
        }
        return performance.now() - t0;
      }),
    );
    const wallMs = performance.now() - t0;
    const layerAllocatedMiB = ids.map((id) => statSync(host.local(path.join(host.chrootBase, 'firecracker', jailId('boot', id), 'root', 'layer.ext4'))).blocks / 2048);
    const load = os.loadavg();
    for (const id of ids) await driver.destroy(id, {});
    await driver.close();
    return { readyMs, wallMs, layerAllocatedMiB, load };
  } finally {
    await host.stop();
    await fs.rm(mount, { recursive: true, force: true });
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

const fmt = (ms: number) => (ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`);

async function main(): Promise<void> {
  const out: { control?: SizeResult[]; boot?: BootResult; machine: { cpus: number; load: number[] } } = { machine: { cpus: os.cpus().length, load: os.loadavg() } };
  if (!flag('--skip-control')) out.control = await controlCost();
  if (!flag('--skip-boot')) out.boot = await realBoot();
  if (flag('--json')) {
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    return;
  }
  const lines: string[] = [`Firecracker driver, ${out.machine.cpus} CPUs, load at start ${out.machine.load.map((l) => l.toFixed(1)).join(' ')}`];
  if (out.control) {
    lines.push('', `Control cost per microVM, booting disabled (stand-in VMM: InstanceStart starts no guest), ${CONCURRENCY} at a time, one host over SSH (reporting ${REPORTED_CPUS} CPUs to placement):`);
    lines.push('| microVMs | create wall | start wall | list | destroy wall | create p50/p99 | start p50/p99 | destroy p50/p99 | API calls/node | layer allocated (mean/max) | stand-in PSS/process | taps | left after destroy |');
    lines.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
    for (const r of out.control) {
      lines.push(
        `| ${r.nodes} | ${fmt(r.wallMs.create)} | ${fmt(r.wallMs.start)} | ${fmt(r.wallMs.list)} | ${fmt(r.wallMs.destroy)} | ${fmt(r.perNodeMs.create.p50)} / ${fmt(r.perNodeMs.create.p99)} | ${fmt(r.perNodeMs.start.p50)} / ${fmt(r.perNodeMs.start.p99)} | ` +
          `${fmt(r.perNodeMs.destroy.p50)} / ${fmt(r.perNodeMs.destroy.p99)} | ${r.apiCallsPerNode.toFixed(1)} | ${r.layerAllocatedKiB.mean.toFixed(0)} / ${r.layerAllocatedKiB.max} KiB | ${r.standinMemoryMiB.pssPerProcess.toFixed(1)} MiB (RSS ${r.standinMemoryMiB.rssPerProcess.toFixed(1)}) | ${r.taps} | ${r.leftAfterDestroy.processes} processes, ${r.leftAfterDestroy.taps} taps |`,
      );
    }
    lines.push('', 'Growth of the per-node cost (wall time of create+start per node, relative to the previous size; 1.0 = flat):');
    for (let i = 1; i < out.control.length; i++) {
      const [a, b] = [out.control[i - 1]!, out.control[i]!];
      const per = (r: SizeResult) => (r.wallMs.create + r.wallMs.start) / r.nodes;
      lines.push(`  ${a.nodes} → ${b.nodes}: ${fmt(per(a))} → ${fmt(per(b))} per node (×${(per(b) / per(a)).toFixed(2)})`);
    }
  }
  if (out.boot) {
    lines.push('', 'Real boot to ready (stand-in VMM booting QEMU -M microvm under TCG, shared read-only rootfs, MMDS identity), 3 in parallel:');
    lines.push(`  start → "kubedos: ready": ${out.boot.readyMs.map(fmt).join(', ')} (all 3: ${fmt(out.boot.wallMs)}); writable layers after first boot: ${out.boot.layerAllocatedMiB.map((m) => `${m.toFixed(1)} MiB`).join(', ')}; load ${out.boot.load.map((l) => l.toFixed(1)).join(' ')}`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${String((err as Error)?.stack ?? err)}\n`);
  process.exit(1);
});
