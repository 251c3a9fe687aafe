/**
 * bench/build: what a KubeDos image costs against Debian's own image builder, on this machine, in
 * this run. Prints figures; it is not a test (but exits 1 when a measurement could not be taken or
 * the warm rebuild ran mmdebstrap).
 *
 *   npx ts-node --transpile-only bench/build.ts [--skip-mkosi] [--mkosi-runs N] [--skip-roles] [--roles-unshared] [--json] [--keep]
 *   bench/build [same options]
 *
 * 1. cold: buildImage() of a quickstart-like plan (default base package set, raw + qcow2) from
 *    nothing: an empty layer cache AND an empty .deb cache in a fresh temp dir; no lock, so the
 *    base is resolved against the mirror.
 * 2. warm: the same plan with one payload file changed, same caches, the cold build's lock; must
 *    not run mmdebstrap. Target ≤ 10 s.
 * 3. all formats from the warm layer: every format that needs no outside input (all but
 *    installer-media, which repacks a Debian installer ISO the plan must name), one payload file
 *    changed again, same caches and lock. Target ≤ 30 s; the formats phase (after the payload)
 *    and each format's own time are printed.
 * 4. roles: every image of examples/roles (seven roles on one platform), each with its own
 *    outputs, built at once from empty caches as `kubedos build examples/roles` would: the
 *    platform's packages are installed once into the shared layer and each role's on top.
 *    Target ≤ 2.5 × the cold build of step 1. --roles-unshared also builds them one pass each (as
 *    before the shared layer) for the comparison; --skip-roles leaves the step out.
 * 5. mkosi: Debian's mkosi 14 building the same package set (bookworm, same mirror) into a GPT
 *    ext4 disk encoded as qcow2 (bench/mkosi/mkosi.conf), from nothing (no package cache), run N
 *    times (default 2) to see whether its output is bit-identical. Target: cold ≤ mkosi.
 *
 * Everything lives in one temp dir, deleted at the end (--keep keeps it). The load average is
 * sampled at the start and end of each measurement: the machine is shared.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildImage, FORMAT_NAMES, type BuildPlan, type BuildResult } from '../src/foundry';
import { planFromSpec } from '../src/foundry/from-spec';
import { loadSpec } from '../src/platform/load';
import { MOTD, quickstartPlan } from './quickstart-plan';

process.env.KUBEDOS_LOG_LEVEL ??= 'warn';

const REPO = path.resolve(__dirname, '..');
const MKOSI_CONF = path.join(REPO, 'bench', 'mkosi', 'mkosi.conf');
const WARM_TARGET_S = 10;
const ALL_FORMATS_TARGET_S = 30;
/** examples/roles from cold, against one image's cold build. */
const ROLES_TARGET_RATIO = 2.5;
const ROLES_SPEC = path.join(REPO, 'examples', 'roles');
/** installer-media repacks a Debian installer ISO named by the plan: not part of the all-formats figure. */
const ALL_FORMATS = FORMAT_NAMES.filter((f) => f !== 'installer-media') as BuildPlan['formats'];

// ---------------------------------------------------------------------------------------------

interface Load { start: string; end: string }
interface FileSize { file: string; bytes: number; allocatedBytes: number; sha256: string }

interface KubedosRun {
  seconds: number;
  /** CPU time of this process and its (waited-for) children during the build: the floor on this machine is cpuSeconds / cores. */
  cpuSeconds: number;
  engineSeconds: number;
  ranMmdebstrap: boolean;
  timings: Record<string, number>;
  packages: number;
  artifacts: FileSize[];
  load: Load;
}

interface MkosiRun { seconds: number; qcow2: FileSize; load: Load }

/** Every image of examples/roles with its own outputs, at once (as the build pool runs them), from empty caches. */
interface RolesRun {
  seconds: number;
  cpuSeconds: number;
  /** Whether images were installed on the platform's shared layer (false: each in one pass, as before it). */
  shared: boolean;
  sharedLayers: number;
  images: { name: string; seconds: number; prepareRootfsSeconds: number; formats: string[] }[];
  load: Load;
}

interface MkosiResult {
  version?: string;
  argv?: string[];
  config: string;
  runs: MkosiRun[];
  /** Only when run twice or more. */
  bitIdentical?: boolean;
  packages?: number;
  /** What the image holds, from debugfs on the converted raw disk (comparability, not timed). */
  image?: { bootFiles: string[]; initrd: boolean; rootUsedBytes: number };
  error?: string;
}

interface Report {
  machine: { cores: number; memGiB: number; kernel: string; loadStart: string; loadEnd?: string };
  kubedos: { cold?: KubedosRun; warm?: KubedosRun; allFormats?: KubedosRun & { formatsSeconds: number }; roles?: RolesRun; rolesUnshared?: RolesRun; error?: string };
  mkosi: MkosiResult | { skipped: true };
  /** coldOverMkosi is against mkosi's first run (the target's measure); the fastest run is the strictest view. */
  ratios: { coldOverMkosi?: number; coldOverFastestMkosi?: number; warmOverTarget?: number; allFormatsOverTarget?: number; rolesOverCold?: number; rolesUnsharedOverCold?: number };
  targets: { coldLeMkosi?: boolean; warmLe10s?: boolean; warmSkippedMmdebstrap?: boolean; allFormatsLe30s?: boolean; rolesLe2_5Cold?: boolean };
}

const log = (msg: string): void => void process.stderr.write(`bench/build: ${msg}\n`);
/** user + system CPU seconds of this process and its reaped children (/proc/self/stat utime, stime, cutime, cstime). */
async function cpuSeconds(): Promise<number> {
  const stat = await fs.readFile('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14-17 of proc(5), counted from `state` (field 3) here: clock ticks, 100 per second on Linux.
  return fields.slice(11, 15).reduce((sum, f) => sum + Number(f), 0) / 100;
}
const loadavg = async (): Promise<string> => (await fs.readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
const round = (n: number, d = 1): number => Math.round(n * 10 ** d) / 10 ** d;

async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

async function sizeOf(file: string, sha256?: string): Promise<FileSize> {
  const st = await fs.stat(file);
  return { file: path.basename(file), bytes: st.size, allocatedBytes: st.blocks * 512, sha256: sha256 ?? (await sha256File(file)) };
}

/** Run a command to completion, output to a log file; reject with the log's tail on failure. */
function run(argv: string[], opts: { cwd: string; logFile: string; env?: NodeJS.ProcessEnv }): Promise<void> {
  return new Promise((resolve, reject) => {
    const out = createWriteStream(opts.logFile);
    const child = spawn(argv[0]!, argv.slice(1), { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.pipe(out, { end: false });
    child.stderr.pipe(out, { end: false });
    child.on('error', (err) => { out.end(); reject(err); });
    child.on('close', (code, signal) => {
      out.end(async () => {
        if (code === 0) return resolve();
        const text = await fs.readFile(opts.logFile, 'utf8').catch(() => '');
        const tail = text.trimEnd().split('\n').slice(-15).join('\n');
        reject(new Error(`${path.basename(argv[0]!)} exited with ${code ?? signal}; last lines of its log:\n${tail}`));
      });
    });
  });
}

function capture(argv: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${argv.join(' ')} exited with ${code}: ${out.trim()}`))));
  });
}

// ---------------------------------------------------------------------------------------------

async function kubedosBuild(plan: BuildPlan, opts: { cacheDir: string; debCacheDir: string; outputDir: string; lock?: BuildResult['lock'] }, label: string): Promise<{ run: KubedosRun; result: BuildResult }> {
  const start = await loadavg();
  log(`kubedos ${label}: building ${plan.formats.join('+')} (load ${start})`);
  const t0 = performance.now();
  const cpu0 = await cpuSeconds();
  const result = await buildImage(plan, { ...opts, onStep: (step, ms) => log(`  ${label} ${step}: ${round(ms / 1000)} s`) });
  const seconds = (performance.now() - t0) / 1000;
  const cpu = (await cpuSeconds()) - cpu0;
  const end = await loadavg();
  const artifacts: FileSize[] = [];
  for (const a of result.manifest.artifacts) artifacts.push(await sizeOf(path.join(opts.outputDir, a.file), a.sha256));
  log(`kubedos ${label}: ${round(seconds)} s (CPU ${round(cpu)} s), mmdebstrap ran: ${result.ranMmdebstrap} (load ${end})`);
  return {
    result,
    run: { seconds: round(seconds, 2), cpuSeconds: round(cpu, 1), engineSeconds: round(result.totalMs / 1000, 2), ranMmdebstrap: result.ranMmdebstrap, timings: result.timings, packages: result.lock.packages.length, artifacts, load: { start, end } },
  };
}

async function rolesBuild(root: string, shared: boolean): Promise<RolesRun> {
  const spec = await loadSpec(ROLES_SPEC);
  const dir = path.join(root, shared ? 'roles' : 'roles-unshared');
  const caches = { cacheDir: path.join(dir, 'cache'), debCacheDir: path.join(dir, 'debs') };
  const plans = Object.keys(spec.images).map((name) => {
    const plan = planFromSpec(spec, name, { sourceDateEpoch: spec.base.sourceDateEpoch! });
    // Without the shared layer: the one-pass install every image had before it.
    if (!shared) delete plan.sharedPackages;
    return plan;
  });
  const label = shared ? 'roles' : 'roles (one pass each)';
  const start = await loadavg();
  log(`kubedos ${label}: ${plans.length} images of examples/roles at once, from empty caches (load ${start})`);
  const t0 = performance.now();
  const cpu0 = await cpuSeconds();
  const results = await Promise.all(plans.map((plan) => buildImage(plan, { ...caches, outputDir: path.join(dir, 'out', plan.image.name) })));
  const seconds = (performance.now() - t0) / 1000;
  const cpu = (await cpuSeconds()) - cpu0;
  const end = await loadavg();
  const sharedLayers = (await fs.readdir(path.join(caches.cacheDir, 'layers'))).filter((n) => n.startsWith('shared-')).length;
  log(`kubedos ${label}: ${round(seconds)} s (CPU ${round(cpu)} s), ${sharedLayers} shared layer(s) (load ${end})`);
  await fs.rm(dir, { recursive: true, force: true });
  return {
    seconds: round(seconds, 2), cpuSeconds: round(cpu, 1), shared, sharedLayers, load: { start, end },
    images: results.map((r, i) => ({ name: plans[i]!.image.name, seconds: round(r.totalMs / 1000, 1), prepareRootfsSeconds: round((r.timings.prepareRootfs ?? 0) / 1000, 1), formats: plans[i]!.formats })),
  };
}

/**
 * mkosi 14 needs, on this builder (PID 1 is not systemd, /run is not a tmpfs):
 * - `NspawnKeepUnit=yes` (in mkosi.conf): systemd-nspawn --keep-unit, no transient scope unit;
 * - a tmpfs on /run/systemd/nspawn in a private mount namespace: nspawn refuses to clean up its
 *   propagation directory on a disk file system ("Attempted to remove disk file system under
 *   /run/systemd/nspawn/propagate/…") and would leave it behind on the host's /run.
 * mkosi detaches its own mount namespace for the loop mount of the image.
 */
function mkosiArgv(outputDir: string, workspaceDir: string): string[] {
  return [
    'unshare', '--mount', '--propagation', 'private', '--',
    'sh', '-c', 'mkdir -p /run/systemd/nspawn && mount -t tmpfs -o mode=0755 tmpfs /run/systemd/nspawn && exec "$@"', 'mkosi-in-namespace',
    'mkosi', `--config=${MKOSI_CONF}`, `--output-dir=${outputDir}`, `--workspace-dir=${workspaceDir}`, 'build',
  ];
}

async function mkosiBench(root: string, runs: number): Promise<MkosiResult> {
  const result: MkosiResult = { config: path.relative(REPO, MKOSI_CONF), runs: [] };
  try {
    if (process.getuid?.() !== 0) throw new Error('mkosi 14 must run as root (loop devices, mounts, systemd-nspawn)');
    result.version = (await capture(['mkosi', '--version']).catch(() => {
      throw new Error('mkosi is not installed: run scripts/bench-deps');
    })).trim();
    await capture(['sh', '-c', 'command -v systemd-nspawn']).catch(() => {
      throw new Error('systemd-nspawn is not installed: run scripts/bench-deps');
    });
    for (let i = 1; i <= runs; i++) {
      const dir = path.join(root, `mkosi-${i}`);
      const outputDir = path.join(dir, 'out');
      const workspaceDir = path.join(dir, 'ws');
      await fs.mkdir(outputDir, { recursive: true });
      await fs.mkdir(workspaceDir, { recursive: true });
      const argv = mkosiArgv(outputDir, workspaceDir);
      result.argv ??= argv;
      const start = await loadavg();
      log(`mkosi run ${i}/${runs} (load ${start}): ${argv.map((a) => (/[\s"$&]/.test(a) ? `'${a}'` : a)).join(' ')}`);
      const t0 = performance.now();
      await run(argv, { cwd: dir, logFile: path.join(dir, 'mkosi.log') });
      const seconds = (performance.now() - t0) / 1000;
      const end = await loadavg();
      const qcow2 = path.join(outputDir, 'debian~bookworm', 'image.qcow2');
      result.runs.push({ seconds: round(seconds, 2), qcow2: await sizeOf(qcow2), load: { start, end } });
      log(`mkosi run ${i}: ${round(seconds)} s (load ${end})`);
      if (i === 1) {
        const manifest = JSON.parse(await fs.readFile(`${qcow2}.manifest`, 'utf8')) as { packages?: unknown[] };
        result.packages = manifest.packages?.length;
        result.image = await inspectMkosiImage(qcow2, dir).catch((err) => {
          log(`could not inspect mkosi's image: ${(err as Error).message}`);
          return undefined;
        });
      }
    }
    if (result.runs.length >= 2) result.bitIdentical = result.runs.every((r) => r.qcow2.sha256 === result.runs[0]!.qcow2.sha256);
  } catch (err) {
    result.error = (err as Error).message;
    log(`mkosi failed: ${result.error}`);
  }
  return result;
}

/** What mkosi put in /boot and how full the root is: qcow2 → raw, then debugfs at the root partition. */
async function inspectMkosiImage(qcow2: string, dir: string): Promise<MkosiResult['image']> {
  const raw = path.join(dir, 'inspect.raw');
  await capture(['qemu-img', 'convert', '-O', 'raw', qcow2, raw]);
  try {
    const table = JSON.parse(await capture(['sfdisk', '-J', raw])) as { partitiontable: { sectorsize?: number; partitions: { start: number; name?: string }[] } };
    const part = table.partitiontable.partitions.find((p) => /root/i.test(p.name ?? '')) ?? table.partitiontable.partitions[0]!;
    const dev = `${raw}?offset=${part.start * (table.partitiontable.sectorsize ?? 512)}`;
    const boot = await capture(['debugfs', '-R', 'ls /boot', dev]);
    const bootFiles = boot.split(/\s+/).filter((w) => /^(vmlinuz|initrd|config|System\.map)/.test(w));
    const stats = await capture(['debugfs', '-R', 'stats', dev]);
    const num = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(stats)?.[1] ?? NaN);
    return { bootFiles, initrd: bootFiles.some((f) => f.startsWith('initrd')), rootUsedBytes: (num('Block count') - num('Free blocks')) * num('Block size') };
  } finally {
    await fs.rm(raw, { force: true });
  }
}

// ---------------------------------------------------------------------------------------------

const MiB = (n: number): string => `${round(n / 1024 / 1024, 0)} MiB`;

function table(report: Report): string {
  const rows: [string, string, string][] = [];
  const add = (what: string, value: string, note = ''): void => void rows.push([what, value, note]);
  const { cold, warm } = report.kubedos;
  const mk = 'skipped' in report.mkosi ? undefined : report.mkosi;
  const art = (r: KubedosRun | undefined, f: string): FileSize | undefined => r?.artifacts.find((a) => a.file.endsWith(`.${f}`));

  add('machine', `${report.machine.cores} cores, ${report.machine.memGiB} GiB, kernel ${report.machine.kernel}`, `load ${report.machine.loadStart} → ${report.machine.loadEnd ?? '?'}`);
  if (cold) {
    add('kubedos cold (from nothing)', `${cold.seconds.toFixed(1)} s`, `mmdebstrap ran: ${cold.ranMmdebstrap}; load ${cold.load.start} → ${cold.load.end}`);
    add('  of which prepareRootfs', `${round((cold.timings.prepareRootfs ?? 0) / 1000).toFixed(1)} s`, 'resolve + download + mmdebstrap + normalise');
  } else add('kubedos cold', 'FAILED', (report.kubedos.error ?? '').split('\n')[0]!);
  if (warm) add('kubedos warm, payload-only change', `${warm.seconds.toFixed(1)} s`, `mmdebstrap ran: ${warm.ranMmdebstrap}; load ${warm.load.start} → ${warm.load.end}`);
  else if (cold) add('kubedos warm', 'FAILED', (report.kubedos.error ?? '').split('\n')[0]!);
  const all = report.kubedos.allFormats;
  if (all) {
    add(`kubedos all ${ALL_FORMATS.length} formats, warm layer`, `${all.seconds.toFixed(1)} s`, `formats phase ${all.formatsSeconds.toFixed(1)} s; mmdebstrap ran: ${all.ranMmdebstrap}; load ${all.load.start} → ${all.load.end}`);
    add('  CPU it used (all processes)', `${all.cpuSeconds.toFixed(1)} s`, `floor on ${report.machine.cores} cores: ${(all.cpuSeconds / report.machine.cores).toFixed(1)} s`);
    if (report.ratios.allFormatsOverTarget !== undefined) add(`ratio all formats / ${ALL_FORMATS_TARGET_S} s target`, report.ratios.allFormatsOverTarget.toFixed(2), `target ≤ 1.00: ${report.targets.allFormatsLe30s ? 'met' : 'NOT met'}`);
  }
  for (const roles of [report.kubedos.roles, report.kubedos.rolesUnshared]) {
    if (!roles) continue;
    add(`kubedos examples/roles, ${roles.images.length} images${roles.shared ? '' : ', one pass each'}`, `${roles.seconds.toFixed(1)} s`, `CPU ${roles.cpuSeconds.toFixed(1)} s; ${roles.sharedLayers} shared layer(s); load ${roles.load.start} → ${roles.load.end}`);
    add('  per image (total / prepareRootfs)', '', roles.images.map((i) => `${i.name} ${i.seconds}/${i.prepareRootfsSeconds} s`).join(', '));
  }
  if (report.ratios.rolesOverCold !== undefined) add('ratio roles / one cold build', report.ratios.rolesOverCold.toFixed(2), `target ≤ ${ROLES_TARGET_RATIO.toFixed(2)}: ${report.targets.rolesLe2_5Cold ? 'met' : 'NOT met'}`);
  if (report.ratios.rolesUnsharedOverCold !== undefined) add('ratio roles one pass each / one cold build', report.ratios.rolesUnsharedOverCold.toFixed(2));
  if (!mk) add('mkosi', 'skipped', '--skip-mkosi');
  else if (mk.error && mk.runs.length === 0) add('mkosi', 'FAILED', mk.error.split('\n')[0]!);
  else {
    mk.runs.forEach((r, i) => add(`mkosi ${mk.version ?? ''} run ${i + 1} (from nothing)`, `${r.seconds.toFixed(1)} s`, `load ${r.load.start} → ${r.load.end}`));
    if (mk.error) add('mkosi (later run)', 'FAILED', mk.error.split('\n')[0]!);
  }
  const r = report.ratios;
  if (r.coldOverMkosi !== undefined) add('ratio cold / mkosi (run 1)', r.coldOverMkosi.toFixed(2), `target ≤ 1.00: ${report.targets.coldLeMkosi ? 'met' : 'NOT met'}`);
  if (r.coldOverFastestMkosi !== undefined && mk && mk.runs.length > 1) add('ratio cold / fastest mkosi run', r.coldOverFastestMkosi.toFixed(2));
  if (r.warmOverTarget !== undefined) add(`ratio warm / ${WARM_TARGET_S} s target`, r.warmOverTarget.toFixed(2), `target ≤ 1.00: ${report.targets.warmLe10s ? 'met' : 'NOT met'}`);
  for (const f of ['raw', 'qcow2']) {
    const a = art(cold, f);
    if (a) add(`kubedos ${f}`, MiB(a.bytes), `${MiB(a.allocatedBytes)} allocated`);
  }
  if (cold) add('kubedos packages (lock)', String(cold.packages), 'bootable: GPT + ESP (systemd-boot, UKI with initrd) + ext4 root');
  if (mk && mk.runs[0]) {
    add('mkosi qcow2', MiB(mk.runs[0].qcow2.bytes), `${MiB(mk.runs[0].qcow2.allocatedBytes)} allocated; virtual 2 GiB (RootSize=2G)`);
    if (mk.packages !== undefined) add('mkosi packages (manifest)', String(mk.packages), 'not bootable (no -b): GPT + ext4 root only');
    if (mk.image) add('mkosi initrd in /boot', mk.image.initrd ? 'yes' : 'NO', `/boot: ${mk.image.bootFiles.join(' ') || '(empty)'}; root fs used ${MiB(mk.image.rootUsedBytes)}`);
    add('mkosi bit-identical across runs', mk.bitIdentical === undefined ? 'not checked (1 run)' : mk.bitIdentical ? 'yes' : 'NO', mk.runs.map((x) => x.qcow2.sha256.slice(0, 12)).join(' vs '));
  }
  if (cold && warm) {
    const c = art(cold, 'qcow2');
    const w = art(warm, 'qcow2');
    if (c && w) add('kubedos cold vs warm qcow2', c.sha256 === w.sha256 ? 'identical (?!)' : 'differ', 'expected: the payload changed');
  }
  const w0 = Math.max(...rows.map((x) => x[0].length));
  const w1 = Math.max(...rows.map((x) => x[1].length));
  return rows.map(([a, b, c]) => `${a.padEnd(w0)}  ${b.padStart(w1)}  ${c}`.trimEnd()).join('\n');
}

async function main(): Promise<number> {
  const opts = { skipMkosi: false, skipRoles: false, rolesUnshared: false, json: false, keep: false, mkosiRuns: 2 };
  const args = process.argv.slice(2);
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--skip-mkosi') opts.skipMkosi = true;
    else if (a === '--skip-roles') opts.skipRoles = true;
    else if (a === '--roles-unshared') opts.rolesUnshared = true;
    else if (a === '--json') opts.json = true;
    else if (a === '--keep') opts.keep = true;
    else if (a === '--mkosi-runs' || a.startsWith('--mkosi-runs=')) opts.mkosiRuns = Number(a.includes('=') ? a.slice(a.indexOf('=') + 1) : args[++i]);
    else opts.mkosiRuns = NaN;
  }
  if (!Number.isInteger(opts.mkosiRuns) || opts.mkosiRuns < 1) {
    process.stderr.write('usage: bench/build [--skip-mkosi] [--mkosi-runs N (default 2)] [--skip-roles] [--roles-unshared] [--json] [--keep]\n');
    return 2;
  }

  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-bench-build-'));
  const cleanup = async (): Promise<void> => {
    if (opts.keep) log(`kept ${root}`);
    else await fs.rm(root, { recursive: true, force: true });
  };
  const onSignal = (): void => void cleanup().finally(() => process.exit(130));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  log(`temp dir ${root}`);

  const report: Report = {
    machine: { cores: os.cpus().length, memGiB: Math.round(os.totalmem() / 2 ** 30), kernel: os.release(), loadStart: await loadavg() },
    kubedos: {},
    mkosi: { skipped: true },
    ratios: {},
    targets: {},
  };
  try {
    const caches = { cacheDir: path.join(root, 'kubedos', 'cache'), debCacheDir: path.join(root, 'kubedos', 'debs') };
    try {
      const cold = await kubedosBuild(quickstartPlan(MOTD), { ...caches, outputDir: path.join(root, 'kubedos', 'out-cold') }, 'cold');
      report.kubedos.cold = cold.run;
      // Only the content of one payload file changes: same base, same lock, same caches.
      const warm = await kubedosBuild(quickstartPlan(`${MOTD}Rebuilt by bench/build at ${new Date().toISOString()}.\n`), { ...caches, outputDir: path.join(root, 'kubedos', 'out-warm'), lock: cold.result.lock }, 'warm');
      report.kubedos.warm = warm.run;
      report.targets.warmSkippedMmdebstrap = !warm.run.ranMmdebstrap;
      report.ratios.warmOverTarget = round(warm.run.seconds / WARM_TARGET_S, 3);
      report.targets.warmLe10s = warm.run.seconds <= WARM_TARGET_S;
      const all = await kubedosBuild(quickstartPlan(`${MOTD}All formats, by bench/build at ${new Date().toISOString()}.\n`, ALL_FORMATS), { ...caches, outputDir: path.join(root, 'kubedos', 'out-all'), lock: cold.result.lock }, 'all formats');
      // The formats run concurrently: their phase is the build less its sequential steps.
      const sequential = Object.entries(all.run.timings).filter(([name]) => !name.startsWith('produce-'));
      const before = sequential.reduce((ms, [, v]) => ms + v, 0);
      report.kubedos.allFormats = { ...all.run, formatsSeconds: round((all.result.totalMs - before) / 1000, 2) };
      report.ratios.allFormatsOverTarget = round(all.run.seconds / ALL_FORMATS_TARGET_S, 3);
      report.targets.allFormatsLe30s = all.run.seconds <= ALL_FORMATS_TARGET_S;
      if (!opts.skipRoles) {
        const roles = await rolesBuild(root, true);
        report.kubedos.roles = roles;
        report.ratios.rolesOverCold = round(roles.seconds / cold.run.seconds, 3);
        report.targets.rolesLe2_5Cold = report.ratios.rolesOverCold <= ROLES_TARGET_RATIO;
        if (opts.rolesUnshared) {
          report.kubedos.rolesUnshared = await rolesBuild(root, false);
          report.ratios.rolesUnsharedOverCold = round(report.kubedos.rolesUnshared.seconds / cold.run.seconds, 3);
        }
      }
    } catch (err) {
      report.kubedos.error = (err as Error).stack ?? String(err);
      log(`kubedos build failed: ${report.kubedos.error}`);
    }
    if (!opts.skipMkosi) {
      const mk = await mkosiBench(root, opts.mkosiRuns);
      report.mkosi = mk;
      if (report.kubedos.cold && mk.runs[0]) {
        report.ratios.coldOverMkosi = round(report.kubedos.cold.seconds / mk.runs[0].seconds, 3);
        report.ratios.coldOverFastestMkosi = round(report.kubedos.cold.seconds / Math.min(...mk.runs.map((x) => x.seconds)), 3);
        report.targets.coldLeMkosi = report.kubedos.cold.seconds <= mk.runs[0].seconds;
      }
    }
  } finally {
    report.machine.loadEnd = await loadavg();
    await cleanup();
  }

  if (opts.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else {
    process.stdout.write(`${table(report)}\n`);
    const mk = 'skipped' in report.mkosi ? undefined : report.mkosi;
    if (mk?.argv) process.stdout.write(`\nmkosi argv: ${JSON.stringify(mk.argv)}\n`);
    if (mk?.error) process.stdout.write(`\nmkosi could not be measured${mk.runs.length ? ' completely' : ''}: ${mk.error}\n`);
    if (report.kubedos.error) process.stdout.write(`\nkubedos build failed: ${report.kubedos.error}\n`);
    if (report.kubedos.cold) process.stdout.write(`\nkubedos cold steps (s): ${Object.entries(report.kubedos.cold.timings).map(([k, v]) => `${k} ${round(v / 1000)}`).join(', ')}\n`);
    if (report.kubedos.warm) process.stdout.write(`kubedos warm steps (s): ${Object.entries(report.kubedos.warm.timings).map(([k, v]) => `${k} ${round(v / 1000)}`).join(', ')}\n`);
    if (report.kubedos.allFormats) process.stdout.write(`kubedos all-formats steps (s, formats concurrent): ${Object.entries(report.kubedos.allFormats.timings).map(([k, v]) => `${k} ${round(v / 1000)}`).join(', ')}\n`);
  }
  const mkFailed = !('skipped' in report.mkosi) && report.mkosi.error !== undefined;
  return report.kubedos.error || report.targets.warmSkippedMmdebstrap === false || report.kubedos.allFormats?.ranMmdebstrap || mkFailed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);
