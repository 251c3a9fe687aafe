/**
 * Capability probes: which tools a pool needs, where they are, which version, and whether this
 * host can use KVM. A worker refuses its queue when its probe is not ok.
 */
import { constants, promises as fs } from 'node:fs';
import os from 'node:os';
import { POOLS, type PoolName } from '../pools/pools';
import { poolRequirements } from '../pools/requirements';
import { runTool, which } from './run';

export interface ToolProbe {
  name: string;
  found: boolean;
  path?: string;
  version?: string;
}

export interface FileProbe {
  path: string;
  found: boolean;
}

export type Accel = 'kvm' | 'tcg';

export interface PoolProbe {
  pool: PoolName;
  taskQueue: string;
  ok: boolean;
  /** One line per missing requirement, phrased as what to do. */
  missing: string[];
  tools: ToolProbe[];
  files: FileProbe[];
  host: string;
  pid: number;
  node: string;
  /** The plug-ins the pool runs (formats on build, target types elsewhere) and whether each can run here. */
  plugins: PluginProbe[];
  /** Only probed by pools that run VMs. */
  accel?: { mode: Accel; reason: string };
}

/** One format or target type a pool runs, and what it lacks on this host. */
export interface PluginProbe {
  kind: 'format' | 'target';
  name: string;
  ok: boolean;
  missing: string[];
}

/** Tools without a version flag of their own: ask a sibling from the same package. */
const VERSION_FROM: Record<string, string[]> = {
  'ssh-keygen': ['ssh', '-V'],
};

/** How to ask each tool its version; the first dotted number in the output is taken. */
const VERSION_ARGS: Record<string, string[]> = {
  'mkfs.ext4': ['-V'],
  debugfs: ['-V'],
  'mkfs.vfat': ['--help'],
  xorriso: ['-version'],
  mksquashfs: ['-version'],
  govc: ['version'],
};

const VERSION_RE = /\d+\.\d+(?:\.\d+)?(?:[-+~p][\w.]+)?/;

export async function probeTool(name: string): Promise<ToolProbe> {
  const path = await which(name);
  if (!path) return { name, found: false };
  const argv = VERSION_FROM[name] ?? [path, ...(VERSION_ARGS[name] ?? ['--version'])];
  try {
    const { stdout, stderr } = await runTool(argv, { timeoutMs: 10_000 });
    return { name, found: true, path, version: VERSION_RE.exec(`${stdout}\n${stderr}`)?.[0] };
  } catch (err) {
    // Some tools print their version and exit non-zero (mkfs.vfat --help); keep what they said.
    const text = String((err as { stderrTail?: string }).stderrTail ?? '');
    return { name, found: true, path, version: VERSION_RE.exec(text)?.[0] };
  }
}

/** KVM is usable when /dev/kvm opens read-write and the CPU advertises vmx or svm. */
export async function probeAccel(): Promise<{ mode: Accel; reason: string }> {
  try {
    await fs.access('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return { mode: 'tcg', reason: 'no usable /dev/kvm' };
  }
  const cpuinfo = await fs.readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  if (!/\b(vmx|svm)\b/.test(cpuinfo)) {
    return { mode: 'tcg', reason: 'CPU has no vmx/svm' };
  }
  return { mode: 'kvm', reason: '/dev/kvm usable' };
}

/**
 * Probe every requirement of a pool on this host: its own and those of every plug-in it runs.
 * The probe is not ok when anything is missing, so a host never polls a queue whose work it
 * would fail at (another host of the pool may be complete).
 */
export async function probePool(pool: PoolName): Promise<PoolProbe> {
  const def = POOLS[pool];
  const needs = poolRequirements(pool);
  const tools = await Promise.all(needs.tools.map(probeTool));
  const fileProbes = await Promise.all(
    needs.files.map(async (path) => ({ path, found: await fs.access(path).then(() => true, () => false) })),
  );
  const lacking = (names: readonly string[], paths: readonly string[]) => [
    ...tools.filter((t) => !t.found && names.includes(t.name)).map((t) => `install ${t.name} (not on PATH)`),
    ...fileProbes.filter((f) => !f.found && paths.includes(f.path)).map((f) => `install the package that provides ${f.path}`),
  ];
  const missing = lacking(needs.tools, needs.files);
  return {
    pool,
    taskQueue: def.taskQueue,
    ok: missing.length === 0,
    missing,
    tools,
    files: fileProbes,
    plugins: needs.plugins.map((p) => {
      const gaps = lacking(p.tools, p.files);
      return { kind: p.kind, name: p.name, ok: gaps.length === 0, missing: gaps };
    }),
    host: os.hostname(),
    pid: process.pid,
    node: process.version,
    accel: def.probesAccel ? await probeAccel() : undefined,
  };
}
