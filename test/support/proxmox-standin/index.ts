/**
 * A "Proxmox host" for tests, made of STAND-INS: the real OpenSSH server of ../sshd.ts on loopback,
 * whose sessions find the stand-in `qm` and `pvesm` of this directory first on PATH (sshd's own
 * `SetEnv`, applied by re-reading its config on SIGHUP). Nothing of Proxmox runs; see standin.js
 * for what the stand-ins check and simulate. State (VM configs, volumes, serial sockets, the argv
 * log) lives in a temporary directory removed by stop().
 */
import { execFile } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { SshClient } from '../../../src/ssh';
import type { TargetOf } from '../../../src/platform/types';
import { SSHD, startSshd, type SshdServer } from '../sshd';

const run = promisify(execFile);
const BIN = __dirname;
const STANDIN = path.join(BIN, 'standin.js');

/** One line of the stand-ins' argv log. */
export interface Invocation {
  t: string;
  /** `ssh` when it came through sshd, `local` for the test's own setup calls. */
  via: 'ssh' | 'local';
  tool: 'qm' | 'pvesm';
  argv: string[];
  exit: number;
  stderr: string;
}

export interface StandinOptions {
  /** VM ids in use on other nodes of the "cluster" (not in `qm list` here). */
  otherNodes?: Record<number, string>;
  /** Time from `qm start` to the readiness line. @default 1200 */
  bootMs?: number;
}

export interface ProxmoxStandin {
  sshd: SshdServer;
  /** The stand-ins' state directory. */
  stateDir: string;
  /** The node name, as `uname -n` gives it on this machine (what real qm would use). */
  node: string;
  /** Where the simulated VMs put their serial sockets (the driver's serialSocketDir). */
  runDir: string;
  /** Directory behind the `local` storage (snippets live in `<localDir>/snippets`). */
  localDir: string;
  /** A proxmox target spec for this host, pinned to the sshd's real ed25519 key. */
  spec(overrides?: Partial<TargetOf<'proxmox'>>): TargetOf<'proxmox'>;
  invocations(): Invocation[];
  /** Run a stand-in locally (test setup and inspection; logged with via=local). */
  local(tool: 'qm' | 'pvesm', argv: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  /** A VM's stored config (JSON), or undefined. */
  config(vmid: number): Record<string, string> | undefined;
  vmids(): number[];
  /** Volume files of every storage. */
  volumes(): string[];
  stop(): Promise<void>;
}

/** Pids of live processes whose command line mentions `marker` (for cleanup after a failed test). */
export function pidsMentioning(marker: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (!readFileSync(`/proc/${name}/cmdline`, 'utf8').includes(marker)) continue;
      if (/\) Z /.test(readFileSync(`/proc/${name}/stat`, 'utf8'))) continue;
      pids.push(Number(name));
    } catch {
      /* gone meanwhile */
    }
  }
  return pids;
}

export function killProcessesMentioning(marker: string): void {
  for (const pid of pidsMentioning(marker)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

export async function startProxmoxStandin(options: StandinOptions = {}): Promise<ProxmoxStandin> {
  const stateDir = mkdtempSync(path.join(os.tmpdir(), 'kubedos-pve-standin-'));
  const localDir = path.join(stateDir, 'vz');
  const runDir = path.join(stateDir, 'run');
  mkdirSync(path.join(localDir, 'snippets'), { recursive: true });
  mkdirSync(runDir, { recursive: true });
  const node = os.hostname().split('.')[0]!;
  writeFileSync(
    path.join(stateDir, 'host.json'),
    JSON.stringify({
      node,
      bridges: ['vmbr0'],
      storages: {
        local: { type: 'dir', path: localDir, content: ['iso', 'vztmpl', 'backup', 'snippets'] },
        'local-lvm': { type: 'lvmthin', vgname: 'pve', content: ['images', 'rootdir'] },
      },
      otherNodes: options.otherNodes ?? {},
      bootMs: options.bootMs ?? 1200,
      createDelayMs: 150,
      importDelayMs: 100,
    }),
  );

  const sshd = await startSshd();
  try {
    // Sessions get the stand-ins first on PATH (and node, which runs them), and their state directory.
    const env = [`PATH=${BIN}:${path.dirname(process.execPath)}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`, `KUBEDOS_PVE_STANDIN=${stateDir}`];
    if (env.some((e) => /\s|"/.test(e))) throw new Error(`stand-in paths must not contain spaces or quotes: ${env.join(' ')}`);
    const config = path.join(sshd.dir, 'sshd_config');
    appendFileSync(config, `SetEnv ${env.join(' ')}\n`);
    await run(SSHD, ['-t', '-f', config]);
    // The listener (its title rewritten by sshd, the config path still in it); sessions never mention it.
    const pids = pidsMentioning(config);
    if (pids.length !== 1) throw new Error(`expected one sshd listener for ${config}, found ${pids.length}`);
    const pid = pids[0]!;
    process.kill(pid, 'SIGHUP'); // sshd re-executes itself with the new config, same pid
    await waitForEnv(sshd, stateDir);
  } catch (err) {
    await sshd.stop();
    rmSync(stateDir, { recursive: true, force: true });
    throw err;
  }

  const readJson = <T>(file: string): T | undefined => {
    try {
      return JSON.parse(readFileSync(file, 'utf8')) as T;
    } catch {
      return undefined;
    }
  };
  const vmids = () =>
    readdirSafe(path.join(stateDir, 'qemu-server'))
      .map((f) => /^(\d+)\.conf$/.exec(f)?.[1])
      .filter((v): v is string => v !== undefined)
      .map(Number)
      .sort((a, b) => a - b);

  return {
    sshd,
    stateDir,
    node,
    runDir,
    localDir,
    spec: (overrides = {}) =>
      ({
        type: 'proxmox',
        ssh: { host: sshd.host, port: sshd.port, user: sshd.user, identityFile: sshd.identityFile, hostKey: sshd.hostKeys.ed25519.publicKey },
        node,
        storage: 'local-lvm',
        bridge: 'vmbr0',
        vmidRange: [9000, 9019],
        memory: 1024 * 1024 * 1024,
        cpus: 2,
        ...overrides,
      }) as TargetOf<'proxmox'>,
    invocations: () =>
      readFileSafe(path.join(stateDir, 'argv.log'))
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Invocation),
    local: async (tool, argv) => {
      try {
        const r = await run(process.execPath, [STANDIN, tool, ...argv], { env: { ...process.env, KUBEDOS_PVE_STANDIN: stateDir, SSH_CONNECTION: '' } });
        return { code: 0, stdout: r.stdout, stderr: r.stderr };
      } catch (err) {
        const e = err as { code?: number; stdout?: string; stderr?: string };
        return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
      }
    },
    config: (vmid) => readJson(path.join(stateDir, 'qemu-server', `${vmid}.conf`)),
    vmids,
    volumes: () => [
      ...readdirSafe(path.join(stateDir, 'lvm', 'local-lvm')).map((f) => `local-lvm:${f}`),
      ...readdirSafe(path.join(localDir, 'images')).flatMap((d) => readdirSafe(path.join(localDir, 'images', d)).map((f) => `local:${d}/${f}`)),
    ],
    stop: async () => {
      killProcessesMentioning(stateDir); // simulated VMs
      await sshd.stop();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

function readdirSafe(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

function readFileSafe(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** Wait until sshd, restarted by SIGHUP, serves sessions with the stand-in environment. */
async function waitForEnv(sshd: SshdServer, stateDir: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const client = await SshClient.connect(sshd.target(), { connectTimeoutMs: 3_000 });
      try {
        const r = await client.exec(['printenv', 'KUBEDOS_PVE_STANDIN'], { timeoutMs: 5_000 });
        if (r.stdout.trim() === stateDir) return;
        last = `printenv gave ${JSON.stringify(r.stdout.trim())}`;
      } finally {
        await client.close();
      }
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(100);
  }
  throw new Error(`sshd did not come back with the stand-in environment: ${last}`);
}
