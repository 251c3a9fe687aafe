/**
 * The `ssh` health check's runner: a command on the node over the SSH layer, pinned to the host
 * key the Foundry generated and recorded for that node (never trust on first use: a node that
 * answers with another key fails the check). Connections are pooled per node and pin, so a probe
 * every few seconds reuses one session.
 */
import { SshPool, type SshPoolOptions } from '../ssh';
import type { SshProbe } from './check';

export interface SshProbeOptions {
  /** Login on the nodes. @default 'root' (the fleet's authorized keys go to root) */
  user?: string;
  /** Private key matching one of the fleet's authorized keys; default: the SSH agent (SSH_AUTH_SOCK). */
  identityFile?: string;
  /**
   * Longest a command may run. Keep probes short: the health activity heartbeats between probes.
   * @default 20000
   */
  timeoutMs?: number;
  /**
   * Connection settings. A booting guest behind a forwarded port accepts TCP and then says
   * nothing, so the connect timeout bounds most failed probes.
   * @default idle connections close after 10 s; connect timeout 5 s; keepalive every 5 s
   */
  pool?: SshPoolOptions;
}

export interface ClosableSshProbe extends SshProbe {
  /** Close pooled connections (worker shutdown, tests). */
  close(): Promise<void>;
}

/** An SshProbe over a private connection pool. */
export function createSshProbe(options: SshProbeOptions = {}): ClosableSshProbe {
  const pool = new SshPool(options.pool ?? { idleMs: 10_000, connect: { connectTimeoutMs: 5_000, keepaliveIntervalMs: 5_000 } });
  const timeoutMs = options.timeoutMs ?? 20_000;
  const probe = async (target: { host: string; port: number; hostKey: string }, argv: string[], signal?: AbortSignal) => {
    const ssh = { host: target.host, port: target.port, user: options.user ?? 'root', identityFile: options.identityFile, hostKey: target.hostKey };
    const r = await pool.use(ssh, (client) => client.exec(argv, { signal, timeoutMs }), { signal });
    return { exitCode: r.exitCode ?? -1, stderr: r.stderr };
  };
  return Object.assign(probe, { close: () => pool.close() });
}
