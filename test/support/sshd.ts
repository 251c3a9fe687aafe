/**
 * A real OpenSSH server for the SSH tests: /usr/sbin/sshd in the foreground (`-D -e`) on a free
 * loopback port, with its own ed25519 and ECDSA host keys and a config that accepts only public-key
 * auth for one freshly generated client key. Started through spawnDaemon, stopped with stopProcess.
 * Also a real ssh-agent holding that key, for the agent-auth tests.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { isOurProcess, logTail, spawnDaemon, stopProcess } from '../../src/exec/daemon';
import { freePort } from '../../src/exec/ports';
import type { SshTarget } from '../../src/ssh';

const run = promisify(execFile);
export const SSHD = '/usr/sbin/sshd';

export interface HostKeyFiles {
  /** The public key line (`type base64 comment`). */
  publicKey: string;
  /** Its fingerprint as `ssh-keygen -lf` prints it (independent of the code under test). */
  fingerprint: string;
}

export interface SshdServer {
  host: string;
  port: number;
  user: string;
  /** Temp dir holding keys, config and log; removed by stop(). */
  dir: string;
  /** Private key the server accepts. */
  identityFile: string;
  hostKeys: { ed25519: HostKeyFiles; ecdsa: HostKeyFiles };
  logFile: string;
  /** A target pinned by the ed25519 key line unless overridden. */
  target(overrides?: Partial<SshTarget>): SshTarget;
  stop(): Promise<void>;
}

/** Generate a key pair without a passphrase; returns the private key path. */
export async function keygen(file: string, type: 'ed25519' | 'ecdsa', comment = 'kubedos-test'): Promise<string> {
  await run('ssh-keygen', ['-q', '-t', type, '-N', '', '-C', comment, '-f', file]);
  return file;
}

/** `SHA256:…` of a public key file, from ssh-keygen itself. */
export async function keygenFingerprint(pubFile: string): Promise<string> {
  const { stdout } = await run('ssh-keygen', ['-l', '-E', 'sha256', '-f', pubFile]);
  const match = /(SHA256:[A-Za-z0-9+/]{43})/.exec(stdout);
  if (!match) throw new Error(`unexpected ssh-keygen -l output: ${stdout}`);
  return match[1]!;
}

async function hostKey(dir: string, type: 'ed25519' | 'ecdsa'): Promise<HostKeyFiles & { file: string }> {
  const file = await keygen(path.join(dir, `ssh_host_${type}_key`), type, `host-${type}`);
  return { file, publicKey: readFileSync(`${file}.pub`, 'utf8').trim(), fingerprint: await keygenFingerprint(`${file}.pub`) };
}

/** Wait until the server greets with an SSH banner (not just accepts TCP). */
async function waitForBanner(port: number, pid: number, marker: string, logFile: string, timeoutMs: number, host = '127.0.0.1'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const banner = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, host);
      socket.setTimeout(1000, () => {
        socket.destroy();
        resolve(false);
      });
      socket.once('data', (data) => {
        socket.destroy();
        resolve(data.toString('latin1').startsWith('SSH-2.0-'));
      });
      socket.once('error', () => resolve(false));
    });
    if (banner) return;
    if (!isOurProcess(pid, marker)) throw new Error(`sshd exited before listening:\n${logTail(logFile)}`);
    await sleep(50);
  }
  throw new Error(`sshd did not greet on ${host}:${port} within ${timeoutMs} ms:\n${logTail(logFile)}`);
}

export interface SshdOptions {
  /**
   * Start sshd through this argv prefix, which must exec it (e.g. `ip netns exec <ns>`, so that
   * its sessions' commands act in that namespace). Sessions run where sshd runs.
   */
  prefix?: readonly string[];
  /** Address to listen on (one the test can reach, e.g. the namespace's end of a veth pair). @default 127.0.0.1 */
  listen?: string;
  /** @default a free port on this machine */
  port?: number;
  /** Environment of every session (sshd's SetEnv), e.g. a HOME of the test's own. */
  sessionEnv?: Record<string, string>;
}

export async function startSshd(options: SshdOptions = {}): Promise<SshdServer> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kubedos-sshd-'));
  const [ed25519, ecdsa, identityFile] = await Promise.all([
    hostKey(dir, 'ed25519'),
    hostKey(dir, 'ecdsa'),
    keygen(path.join(dir, 'client_key'), 'ed25519', 'kubedos-client'),
  ]);
  writeFileSync(path.join(dir, 'authorized_keys'), readFileSync(`${identityFile}.pub`));
  const host = options.listen ?? '127.0.0.1';
  const port = options.port ?? (await freePort());
  const config = path.join(dir, 'sshd_config');
  writeFileSync(
    config,
    [
      `Port ${port}`,
      `ListenAddress ${host}`,
      `HostKey ${ed25519.file}`,
      `HostKey ${ecdsa.file}`,
      'PidFile none',
      'UsePAM no',
      'StrictModes no',
      'PermitRootLogin prohibit-password',
      'AuthenticationMethods publickey',
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
      'Subsystem sftp internal-sftp',
      'UseDNS no',
      'PrintMotd no',
      'MaxStartups 64',
      // VERBOSE logs each key offered for auth (the wrong-key test relies on it); SSHD_LOGLEVEL=DEBUG1 to debug.
      `LogLevel ${process.env.SSHD_LOGLEVEL ?? 'VERBOSE'}`,
      ...(options.sessionEnv ? [`SetEnv ${Object.entries(options.sessionEnv).map(([k, v]) => `${k}=${v}`).join(' ')}`] : []),
      '',
    ].join('\n'),
  );
  // sshd refuses to start without its privilege-separation directory (normally made by the init script).
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  await run(SSHD, ['-t', '-f', config]);
  const logFile = path.join(dir, 'sshd.log');
  const pid = spawnDaemon([...(options.prefix ?? []), SSHD, '-D', '-e', '-f', config], { logFile, detached: false });
  try {
    await waitForBanner(port, pid, config, logFile, 10_000, host);
  } catch (err) {
    await stopProcess(pid, config, 2000);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const user = 'root';
  return {
    host,
    port,
    user,
    dir,
    identityFile,
    logFile,
    hostKeys: { ed25519: { publicKey: ed25519.publicKey, fingerprint: ed25519.fingerprint }, ecdsa: { publicKey: ecdsa.publicKey, fingerprint: ecdsa.fingerprint } },
    target: (overrides = {}) => ({ host, port, user, identityFile, hostKey: ed25519.publicKey, ...overrides }),
    stop: async () => {
      await stopProcess(pid, config, 5000);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface TestAgent {
  socket: string;
  stop(): Promise<void>;
}

/** A real ssh-agent on a socket in `dir`, holding `identityFile`. */
export async function startAgent(dir: string, identityFile: string): Promise<TestAgent> {
  const socket = path.join(dir, `agent-${process.pid}.sock`);
  const logFile = path.join(dir, 'agent.log');
  const pid = spawnDaemon(['ssh-agent', '-D', '-a', socket], { logFile, detached: false });
  const deadline = Date.now() + 5000;
  for (;;) {
    try {
      await run('ssh-add', [identityFile], { env: { ...process.env, SSH_AUTH_SOCK: socket } });
      break;
    } catch (err) {
      if (Date.now() > deadline) {
        await stopProcess(pid, socket, 1000);
        throw new Error(`ssh-agent did not come up: ${(err as Error).message}\n${logTail(logFile)}`);
      }
      await sleep(50);
    }
  }
  return { socket, stop: () => stopProcess(pid, socket, 2000) };
}

/** Pids of live (non-zombie) processes whose argv is exactly `argv`: PID 1 here does not reap, so zombies count as dead. */
export function livePidsWithArgv(argv: readonly string[]): number[] {
  const wanted = argv.join('\0');
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8').replace(/\0$/, '');
      if (cmdline !== wanted) continue;
      if (/\) Z /.test(readFileSync(`/proc/${name}/stat`, 'utf8'))) continue;
      pids.push(Number(name));
    } catch {
      /* gone meanwhile */
    }
  }
  return pids;
}
