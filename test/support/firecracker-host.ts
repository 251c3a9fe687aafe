/**
 * "Firecracker hosts" for tests and benchmarks, real except for the VMM. Each is a network
 * namespace of its own (kd-firecracker-<random>) joined to this machine by a veth pair, with a
 * real OpenSSH server inside it (../sshd.ts; its sessions' `ip` commands make real taps there) in
 * a mount namespace of its own, where the host's own directory is mounted at a path all hosts
 * share (as separate machines have the same paths, /srv/jailer and so on, with different
 * contents); a real bridge; and at the paths a target spec names, the STAND-IN for Firecracker's
 * `firecracker` and `jailer` binaries (./firecracker-standin, built by scripts/setup --tests): it
 * serves Firecracker's API on the jail's unix socket and, with `boot`, boots the configured
 * kernel under `qemu-system-x86_64 -M microvm`; without, InstanceStart starts nothing (flagged in
 * its log). stop() kills what runs in the namespace, deletes it (taps, bridge, veth) and the
 * directories.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, linkSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { WorkflowHandle } from '@temporalio/client';
import type { TargetOf } from '../../src/platform/types';
import type { FleetStatus } from '../../workflows/fleet-api';
import { waitForStatus } from './fleet';
import { startSshd, type SshdServer } from './sshd';

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '..', '..');
export const STANDIN_BINARY = path.join(ROOT, '.tools', 'bin', 'kubedos-firecracker-standin');

export interface FirecrackerHostOptions {
  /** InstanceStart boots QEMU -M microvm (else it starts nothing). @default false */
  boot?: boolean;
  /** Without boot: print `kubedos: ready <hostname from MMDS>` this long after InstanceStart. */
  emulateGuest?: boolean;
  readyDelayMs?: number;
  /**
   * CPUs the host reports to the driver's placement (its sessions' `nproc`, through
   * OMP_NUM_THREADS), for a benchmark that puts more microVMs on one host than this machine's CPUs
   * allow at the schema's largest oversubscription. @default this machine's
   */
  reportedCpus?: number;
}

export interface FirecrackerTestHost {
  netns: string;
  /** The path every host sees its own directory at (spec paths are under it). */
  mount: string;
  /** This host's directory on this machine: bin/ (the stand-ins), srv/ (chroot base), cgroup/, api.log. */
  dir: string;
  sshd: SshdServer;
  bridge: string;
  /** Spec values (as the host sees them). */
  chrootBase: string;
  firecracker: string;
  jailer: string;
  /** Where the stand-in jailer writes --cgroup values (the driver's cgroupRoot option). */
  cgroupRoot: string;
  /** A path as the host sees it → where it is on this machine. */
  local(hostPath: string): string;
  /** The spec's SSH connection to this host, pinned to its sshd's real ed25519 key. */
  connection(): Exclude<TargetOf<'firecracker'>['hosts'][number], 'local'>;
  /** Every API request the stand-ins served (JSON lines). */
  apiCalls(): Array<{ id: string; method: string; path: string; status: number; body?: unknown }>;
  /** Run argv inside the namespace (assertions: taps, bridges, nftables). */
  exec(argv: string[]): Promise<string>;
  /** Tap devices the driver made there (kf…). */
  taps(): Promise<string[]>;
  /** Live processes in the namespace other than sshd's: firecrackers, QEMUs, MMDS stand-ins. */
  processes(): Promise<Array<{ pid: number; argv: string[] }>>;
  stop(): Promise<void>;
}

function randomName(): string {
  return randomBytes(3).toString('hex');
}

/** A directory every host mounts its own over (short: a jail's API socket path must fit in 107 bytes). */
export function sharedMount(): string {
  const mount = mkdtempSync('/tmp/kdfc-');
  chmodSync(mount, 0o755);
  return mount;
}

function liveArgv(pid: number): string[] | undefined {
  try {
    if (/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))) return undefined;
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return undefined;
  }
}

export async function startFirecrackerHost(mount: string, options: FirecrackerHostOptions = {}): Promise<FirecrackerTestHost> {
  if (!existsSync(STANDIN_BINARY)) throw new Error(`${STANDIN_BINARY} is missing: run scripts/setup --tests`);
  const id = randomName();
  const netns = `kd-firecracker-${id}`;
  const dir = mkdtempSync('/tmp/kdfch-');
  chmodSync(dir, 0o755); // the jailed user walks through it
  const at = (...p: string[]) => path.join(mount, ...p);
  for (const d of ['bin', 'srv', 'cgroup', 'home']) mkdirSync(path.join(dir, d), { mode: 0o755 });
  linkSync(STANDIN_BINARY, path.join(dir, 'bin', 'firecracker'));
  linkSync(STANDIN_BINARY, path.join(dir, 'bin', 'jailer'));
  writeFileSync(path.join(dir, 'api.log'), '', { mode: 0o644 });
  writeFileSync(
    path.join(dir, 'bin', 'jailer.standin.json'),
    JSON.stringify({
      boot: options.boot ?? false,
      emulateGuest: options.emulateGuest ?? false,
      readyDelayMs: options.readyDelayMs ?? 0,
      bootHelper: [process.execPath, path.join(ROOT, 'node_modules', 'ts-node', 'dist', 'bin.js'), '--transpile-only', '--project', path.join(ROOT, 'tsconfig.json'), path.join(__dirname, 'firecracker-standin', 'qemu-argv.ts')],
      cgroupRoot: at('cgroup'),
      apiLog: at('api.log'),
    }),
  );

  // 10.213.<a>.<4b>/30: this machine's end .1, the namespace's .2.
  const a = randomBytes(2);
  const base = (a[1]! % 64) * 4;
  const outside = `10.213.${a[0]}.${base + 1}`;
  const inside = `10.213.${a[0]}.${base + 2}`;
  const veth = [`kfv${id}a`, `kfv${id}b`];
  const bridge = 'kfbr0';
  const ip = (...args: string[]) => run('ip', args);
  const netnsPids = async () => (await ip('netns', 'pids', netns).catch(() => ({ stdout: '' }))).stdout.split('\n').filter(Boolean).map(Number);
  const killAll = async () => {
    for (const pid of await netnsPids()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  };
  const cleanup = async () => {
    await killAll();
    await ip('netns', 'del', netns).catch(() => undefined);
    await ip('link', 'del', veth[0]!).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  };
  let sshd: SshdServer;
  try {
    await ip('netns', 'add', netns);
    await ip('link', 'add', veth[0]!, 'type', 'veth', 'peer', 'name', veth[1]!, 'netns', netns);
    await ip('addr', 'add', `${outside}/30`, 'dev', veth[0]!);
    await ip('link', 'set', veth[0]!, 'up');
    await ip('-n', netns, 'addr', 'add', `${inside}/30`, 'dev', veth[1]!);
    for (const link of ['lo', veth[1]!]) await ip('-n', netns, 'link', 'set', link, 'up');
    await ip('-n', netns, 'link', 'add', bridge, 'type', 'bridge');
    await ip('-n', netns, 'link', 'set', bridge, 'up');
    // sshd (and so every session) in the namespace, in a mount namespace where `mount` is this host's directory.
    const prefix = ['ip', 'netns', 'exec', netns, 'unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c', 'mount --bind "$1" "$2" && shift 2 && exec "$@"', 'sh', dir, mount];
    // Sessions get a HOME of their own: root's shell start-up files on a shared machine are not the host's.
    // (Retried: on a saturated machine sshd has once been seen to exit silently at start.)
    for (let attempt = 1; ; attempt++) {
      try {
        sshd = await startSshd({ prefix, listen: inside, port: 2222, sessionEnv: { HOME: at('home'), ...(options.reportedCpus ? { OMP_NUM_THREADS: String(options.reportedCpus) } : {}) } });
        break;
      } catch (err) {
        if (attempt >= 3) throw err;
        await sleep(1_000);
      }
    }
  } catch (err) {
    await cleanup();
    throw err;
  }
  const exec = async (argv: string[]) => (await run('ip', ['netns', 'exec', netns, ...argv])).stdout;
  return {
    netns,
    mount,
    dir,
    sshd,
    bridge,
    chrootBase: at('srv'),
    firecracker: at('bin', 'firecracker'),
    jailer: at('bin', 'jailer'),
    cgroupRoot: at('cgroup'),
    local: (p) => (p === mount || p.startsWith(`${mount}/`) ? dir + p.slice(mount.length) : p),
    connection: () => ({ host: sshd.host, port: sshd.port, user: 'root', identityFile: sshd.identityFile, hostKey: sshd.hostKeys.ed25519.publicKey }),
    apiCalls: () =>
      readFileSync(path.join(dir, 'api.log'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { id: string; method: string; path: string; status: number; body?: unknown }),
    exec,
    taps: async () => (await exec(['ip', '-o', 'link', 'show'])).split('\n').map((l) => /^\d+: (kf[0-9a-f]{13})[@:]/.exec(l)?.[1]).filter((t): t is string => t !== undefined),
    processes: async () =>
      (await netnsPids())
        .map((pid) => ({ pid, argv: liveArgv(pid) }))
        .filter((p): p is { pid: number; argv: string[] } => p.argv !== undefined && !/sshd/.test(p.argv[0] ?? '')),
    stop: async () => {
      await killAll();
      await sshd.stop();
      await cleanup();
    },
  };
}

/** Entries of a directory, [] when it does not exist. */
export function entries(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

/**
 * waitForStatus (./fleet.ts), tolerating queries that time out while the machine is saturated
 * (several TCG guests on two shared cores can starve the worker that answers them).
 */
export async function waitForFleet(handle: WorkflowHandle, ok: (s: FleetStatus) => boolean, timeoutMs: number): Promise<FleetStatus> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await waitForStatus(handle, ok, Math.max(1_000, deadline - Date.now()));
    } catch (err) {
      if (!/DEADLINE_EXCEEDED|Failed to query Workflow/.test(`${(err as Error).message} ${String((err as { cause?: unknown }).cause)}`) || Date.now() > deadline) throw err;
      await sleep(2_000);
    }
  }
}
