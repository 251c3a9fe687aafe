/**
 * One SSH connection over ssh2: the host key checked against its pin before authenticating, key or
 * agent auth, remote commands only from argv arrays, a shared SFTP session, keepalive and timeouts.
 * Connections are usually borrowed from an SshPool (pool.ts) rather than made directly.
 *
 * sshd runs every command through the remote user's login shell, which must therefore be a POSIX
 * shell (sh, dash, bash, ash, zsh); fish or csh would read the quoting differently.
 */
import { readFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, utils, type ClientChannel, type ConnectConfig, type SFTPWrapper } from 'ssh2';
import {
  CancelledError,
  type HostKeyMismatchError,
  type KubedosError,
  RemoteCommandFailedError,
  RemoteCommandTimeoutError,
  SshAuthError,
  SshConnectError,
} from '../errors';
import { logger } from '../log';
import { loadHostKeyPolicy, noPinnedKeyTypeError, verifyHostKey, type HostKeyPolicy } from './host-key';
import { remoteCommand } from './quote';

/** Where to connect and how the host is pinned; structurally the spec's `SshConnection`. */
export interface SshTarget {
  host: string;
  /** @default 22 */
  port?: number;
  /** @default 'root' */
  user?: string;
  /** Private key file; without it the SSH agent (SSH_AUTH_SOCK) is used. */
  identityFile?: string;
  /** Pinned host key: an OpenSSH public key line or its `SHA256:…` fingerprint. */
  hostKey?: string;
  /** known_hosts file holding the pinned host key (plain or hashed entries). */
  knownHosts?: string;
}

export interface ConnectOptions {
  /** Time for TCP connect, handshake and authentication together. @default 20000 */
  connectTimeoutMs?: number;
  /** SSH-level keepalive period; 0 disables it. @default 15000 */
  keepaliveIntervalMs?: number;
  /** Unanswered keepalives before the connection is declared dead. @default 3 */
  keepaliveCountMax?: number;
  /** Agent socket used when the target has no identityFile. @default process.env.SSH_AUTH_SOCK */
  agentSocket?: string;
  /** Concurrent channels (commands) on this connection; sshd's MaxSessions defaults to 10. @default 8 */
  maxChannels?: number;
  /** Cancels connecting. */
  signal?: AbortSignal;
}

export interface ExecOptions {
  /** Cancels the command: the remote process group gets SIGTERM and the channel is closed. */
  signal?: AbortSignal;
  /** Like `signal`, but rejects with RemoteCommandTimeoutError. No timeout by default. */
  timeoutMs?: number;
  /** Bytes for the remote stdin; without it stdin is closed at once. */
  stdin?: string | Buffer | Readable;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  /** The exit status; null when the program was killed by a signal or none was reported. */
  exitCode: number | null;
  /** The terminating signal, without `SIG` (e.g. `TERM`), when there was one. */
  signal?: string;
}

const STDERR_TAIL_LINES = 20;

function tail(text: string, lines = STDERR_TAIL_LINES): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

/** `user@host:port` of a target. */
export function targetLabel(target: SshTarget): string {
  return `${target.user ?? 'root'}@${target.host}:${target.port ?? 22}`;
}

/** Limits concurrent channels so a busy pooled connection queues instead of hitting MaxSessions. */
class Slots {
  private free: number;
  private readonly waiting: Array<() => void> = [];

  constructor(size: number) {
    this.free = size;
  }

  async acquire(signal: AbortSignal | undefined, what: string): Promise<() => void> {
    if (signal?.aborted) throw new CancelledError(what);
    if (this.free > 0) {
      this.free--;
      return this.releaser();
    }
    await new Promise<void>((resolve, reject) => {
      const grant = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = (): void => {
        this.waiting.splice(this.waiting.indexOf(grant), 1);
        reject(new CancelledError(what));
      };
      this.waiting.push(grant);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    return this.releaser();
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    };
  }
}

/** Session channels a busy connection is refused ("no more sessions", sent as "open failed") before giving up. */
const SESSION_RETRIES = 50;

function sessionRefused(err: Error): boolean {
  return /Channel open failure: open failed/.test(err.message);
}

/**
 * Prefix of every remote command: the login shell prints its pid, then `exec`s the program, which
 * keeps that pid and leads the session's process group (sshd setsid()s each session). Stopping a
 * command then means killing that group with a second command: the SSH "signal" request would be
 * simpler, but sshd refuses it for root sessions, and root is the default target user.
 */
const PID_PREFIX = 'echo $$; ';

/**
 * TERM the group, give it 5 s to go, then KILL what is left. Constant text; the pid is `$1`.
 * (`kill -SIG -PGID` without `--`: dash's kill does not accept `--`.)
 */
const KILL_GROUP_SCRIPT =
  'kill -TERM "-$1" 2>/dev/null || exit 0; i=0; ' +
  'while [ "$i" -lt 50 ] && kill -0 "-$1" 2>/dev/null; do sleep 0.1; i=$((i+1)); done; ' +
  'kill -KILL "-$1" 2>/dev/null; exit 0';

async function authConfig(target: SshTarget, options: ConnectOptions, label: string): Promise<Partial<ConnectConfig>> {
  if (target.identityFile !== undefined) {
    let text: Buffer;
    try {
      text = await readFile(target.identityFile);
    } catch (err) {
      throw new SshAuthError(label, `cannot read identityFile ${target.identityFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 'set identityFile to a readable private key file, or leave it out to use the SSH agent');
    }
    // Parse up front: ssh2 would otherwise throw from inside connect() with a vaguer message.
    const parsed = utils.parseKey(text);
    if (parsed instanceof Error) {
      const encrypted = /passphrase|encrypted/i.test(parsed.message);
      throw new SshAuthError(
        label,
        `cannot use identityFile ${target.identityFile}: ${parsed.message}`,
        encrypted ? 'the key is passphrase-protected: load it into ssh-agent (ssh-add) and leave identityFile out' : 'identityFile must be an OpenSSH or PEM private key',
      );
    }
    return { privateKey: text, authHandler: ['publickey'] };
  }
  const agent = options.agentSocket ?? process.env.SSH_AUTH_SOCK;
  if (!agent) {
    throw new SshAuthError(label, 'no identityFile is set and no SSH agent is available (SSH_AUTH_SOCK is unset)', 'set identityFile in the target spec, or start ssh-agent and add the key (ssh-add)');
  }
  return { agent, authHandler: ['agent'] };
}

function mapConnectError(err: Error & { level?: string }, label: string, policy: HostKeyPolicy, timeoutMs: number): KubedosError {
  switch (err.level) {
    case 'client-authentication':
      return new SshAuthError(label, 'the server accepted none of the offered keys', undefined, { cause: err });
    case 'agent':
      return new SshAuthError(label, `the SSH agent failed: ${err.message}`, 'check that ssh-agent runs at SSH_AUTH_SOCK and holds the key (ssh-add -l)', { cause: err });
    case 'client-timeout':
      return new SshConnectError(label, `no SSH session within ${timeoutMs} ms (${err.message})`, { cause: err });
    case 'handshake':
      // The only host keys we asked for are the pinned types: the server has none of them.
      if (policy.algorithms && /host key/i.test(err.message)) return noPinnedKeyTypeError(policy);
      return new SshConnectError(label, `SSH handshake failed: ${err.message}`, { cause: err });
    default:
      return new SshConnectError(label, err.message, { cause: err });
  }
}

/** An open, verified, authenticated SSH connection. */
export class SshClient {
  private readonly slots: Slots;
  private sftpSession?: Promise<SFTPWrapper>;
  private closedFlag = false;
  /** Remote kills still running; close() lets them finish. */
  private readonly cleanups = new Set<Promise<void>>();
  private readonly closeListeners = new Set<() => void>();

  private constructor(
    private readonly conn: Client,
    /** `user@host:port` */
    readonly label: string,
    /** The verified host key's `SHA256:…` fingerprint. */
    readonly hostKeyFingerprint: string,
    maxChannels: number,
  ) {
    this.slots = new Slots(maxChannels);
    conn.on('close', () => {
      this.closedFlag = true;
      this.sftpSession = undefined;
      for (const listener of this.closeListeners) listener();
      this.closeListeners.clear();
    });
    // After ready, errors (keepalive timeout, reset) end in 'close'; in-flight calls see their channels close.
    conn.on('error', (err) => logger.debug({ target: label, err: err.message }, 'ssh connection error'));
  }

  /**
   * Connect, verifying the host key against its pin before any credential is sent. Rejects with
   * HostKeyNotPinnedError, HostKeyMismatchError, SshAuthError, SshConnectError or CancelledError.
   */
  static async connect(target: SshTarget, options: ConnectOptions = {}): Promise<SshClient> {
    const label = targetLabel(target);
    const timeoutMs = options.connectTimeoutMs ?? 20_000;
    if (options.signal?.aborted) throw new CancelledError(`connecting to ${label}`);
    const policy = await loadHostKeyPolicy(target);
    const auth = await authConfig(target, options, label);
    const conn = new Client();
    let rejection: HostKeyMismatchError | undefined;
    let fingerprint = '';

    return new Promise<SshClient>((resolve, reject) => {
      let settled = false;
      const fail = (err: KubedosError): void => {
        if (settled) return;
        settled = true;
        options.signal?.removeEventListener('abort', onAbort);
        conn.end();
        conn.destroy();
        reject(err);
      };
      const onAbort = (): void => fail(new CancelledError(`connecting to ${label}`));
      const onError = (err: Error & { level?: string }): void => fail(rejection ?? mapConnectError(err, label, policy, timeoutMs));
      const onClose = (): void => fail(rejection ?? new SshConnectError(label, 'the connection closed before the session was ready'));
      options.signal?.addEventListener('abort', onAbort, { once: true });
      conn.once('ready', () => {
        if (settled) return;
        settled = true;
        options.signal?.removeEventListener('abort', onAbort);
        conn.removeListener('error', onError);
        conn.removeListener('close', onClose);
        logger.debug({ target: label, hostKey: fingerprint }, 'ssh connected');
        resolve(new SshClient(conn, label, fingerprint, options.maxChannels ?? 8));
      });
      conn.on('error', onError);
      conn.on('close', onClose);
      try {
        conn.connect({
          host: target.host,
          port: target.port ?? 22,
          username: target.user ?? 'root',
          ...auth,
          readyTimeout: timeoutMs,
          keepaliveInterval: options.keepaliveIntervalMs ?? 15_000,
          keepaliveCountMax: options.keepaliveCountMax ?? 3,
          algorithms: policy.algorithms ? { serverHostKey: [...policy.algorithms] as NonNullable<ConnectConfig['algorithms']>['serverHostKey'] } : undefined,
          // Runs during key exchange, before authentication: a wrong key never sees a credential.
          hostVerifier: (key: Buffer): boolean => {
            try {
              fingerprint = verifyHostKey(policy, key);
              return true;
            } catch (err) {
              rejection = err as HostKeyMismatchError;
              return false;
            }
          },
        });
      } catch (err) {
        fail(new SshConnectError(label, (err as Error).message, { cause: err }));
      }
    });
  }

  /** True once the connection has closed (by close(), the server or the network). */
  get closed(): boolean {
    return this.closedFlag;
  }

  /** Call `listener` once when the connection closes. */
  onClose(listener: () => void): void {
    if (this.closedFlag) listener();
    else this.closeListeners.add(listener);
  }

  /**
   * Run argv on the host and collect its output, whatever the exit status. The command string is
   * built by quoting argv (see quote.ts), never by concatenating caller text. Cancelling (signal or
   * timeout) rejects at once; the remote process group is then terminated in the background.
   */
  exec(argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    return this.execChannel(argv, options, true);
  }

  private async execChannel(argv: readonly string[], options: ExecOptions, limited: boolean): Promise<ExecResult> {
    const command = PID_PREFIX + remoteCommand(argv);
    const what = `${argv[0]} on ${this.label}`;
    if (this.closedFlag) throw new SshConnectError(this.label, `the connection is closed; cannot run ${argv[0]}`);
    const release = limited ? await this.slots.acquire(options.signal, what) : () => undefined;
    if (this.closedFlag) {
      release();
      throw new SshConnectError(this.label, `the connection closed before ${argv[0]} could start`);
    }
    logger.debug({ target: this.label, argv }, 'ssh exec');

    return new Promise<ExecResult>((resolve, reject) => {
      const { signal, timeoutMs } = options;
      let settled = false;
      let stopping = false;
      let channel: ClientChannel | undefined;
      let timer: NodeJS.Timeout | undefined;
      let graceTimer: NodeJS.Timeout | undefined;
      let pid: number | undefined;
      /** stdout until the pid line is complete; undefined afterwards. */
      let head: Buffer | undefined = Buffer.alloc(0);
      const stdout: Buffer[] = [];
      const stderr: Buffer[] = [];
      let exit: { code: number | null; signal?: string } | undefined;

      const settle = (err: Error | undefined, result?: ExecResult): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(result!);
      };
      // Kill the remote group once its pid is known, and close the channel.
      const stopRemote = (): void => {
        stopping = true;
        if (!channel) return; // onChannel calls back once the channel is open
        if (exit) {
          channel.close();
        } else if (pid !== undefined) {
          this.killGroup(pid);
          channel.close();
        } else {
          graceTimer ??= setTimeout(() => channel?.close(), 5000);
        }
      };
      const stop = (err: Error): void => {
        settle(err);
        stopRemote();
      };
      const onAbort = (): void => stop(new CancelledError(what));
      if (signal?.aborted) {
        release();
        settle(new CancelledError(what));
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      if (timeoutMs !== undefined) timer = setTimeout(() => stop(new RemoteCommandTimeoutError(this.label, argv, timeoutMs)), timeoutMs);

      const onStdout = (chunk: Buffer): void => {
        if (head === undefined) {
          stdout.push(chunk);
          return;
        }
        head = Buffer.concat([head, chunk]);
        const newline = head.indexOf(0x0a);
        if (newline < 0 && head.length < 32) return;
        const line = head.subarray(0, Math.max(newline, 0)).toString('latin1');
        if (/^\d+$/.test(line)) {
          pid = Number(line);
          stdout.push(head.subarray(newline + 1));
        } else {
          stdout.push(head); // a login script printed first: keep everything, lose only the ability to kill
        }
        head = undefined;
        if (stopping) stopRemote();
      };

      let refusals = 0;
      const onChannel = (err: Error | undefined, stream: ClientChannel): void => {
        if (err) {
          // sshd frees a finished session's slot a moment after its channel closed, so a busy
          // connection can be refused a session it is entitled to ("no more sessions"): wait, retry.
          if (sessionRefused(err) && refusals < SESSION_RETRIES && !settled && !stopping) {
            refusals++;
            setTimeout(() => {
              try {
                this.conn.exec(command, onChannel);
              } catch (e) {
                onChannel(e as Error, undefined as unknown as ClientChannel);
              }
            }, Math.min(20 * refusals, 500));
            return;
          }
          release();
          settle(new SshConnectError(this.label, `could not open a channel for ${argv[0]}: ${err.message}`, { cause: err }));
          return;
        }
        channel = stream;
        stream.on('close', () => {
          clearTimeout(graceTimer);
          release();
          if (head) stdout.push(head);
          if (!exit && this.closedFlag) {
            settle(new SshConnectError(this.label, `the connection was lost while ${argv[0]} ran`));
            return;
          }
          settle(undefined, {
            stdout: Buffer.concat(stdout).toString('utf8'),
            stderr: Buffer.concat(stderr).toString('utf8'),
            exitCode: exit?.code ?? null,
            signal: exit?.signal,
          });
        });
        stream.on('exit', (code: number | null, signalName?: string) => {
          exit = { code: code ?? null, signal: signalName?.replace(/^SIG/, '') };
        });
        stream.on('data', onStdout);
        stream.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
        const input = options.stdin;
        if (stopping || input === undefined) stream.end();
        else if (typeof input === 'string' || Buffer.isBuffer(input)) stream.end(input);
        else {
          input.on('error', (e) => stop(e));
          input.pipe(stream);
        }
        if (stopping) stopRemote(); // cancelled while the channel was opening
      };
      try {
        this.conn.exec(command, onChannel);
      } catch (err) {
        release();
        settle(new SshConnectError(this.label, `could not run ${argv[0]}: ${(err as Error).message}`, { cause: err }));
      }
    });
  }

  /** Terminate a remote process group in the background; close() waits for it (briefly). */
  private killGroup(pid: number): void {
    // Outside the channel limit: the channel being stopped still holds its slot.
    const kill = this.execChannel(['sh', '-c', KILL_GROUP_SCRIPT, 'sh', String(pid)], { timeoutMs: 10_000 }, false)
      .then((r) => {
        if (r.exitCode !== 0) logger.warn({ target: this.label, pid, stderr: r.stderr }, 'could not stop a remote command');
      })
      .catch((err: Error) => logger.warn({ target: this.label, pid, err: err.message }, 'could not stop a remote command'));
    this.cleanups.add(kill);
    void kill.finally(() => this.cleanups.delete(kill));
  }

  /** exec, but a non-zero exit status (or a signal) rejects with RemoteCommandFailedError. */
  async run(argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    const result = await this.exec(argv, options);
    if (result.exitCode !== 0) {
      throw new RemoteCommandFailedError(this.label, argv, result.exitCode ?? undefined, result.signal, tail(result.stderr));
    }
    return result;
  }

  /** The connection's SFTP session, opened on first use and shared. */
  sftp(): Promise<SFTPWrapper> {
    if (this.closedFlag) return Promise.reject(new SshConnectError(this.label, 'the connection is closed; cannot open SFTP'));
    this.sftpSession ??= new Promise<SFTPWrapper>((resolve, reject) => {
      let refusals = 0;
      const onSftp = (err: Error | undefined, sftp: SFTPWrapper): void => {
        if (err && sessionRefused(err) && refusals < SESSION_RETRIES && !this.closedFlag) {
          refusals++;
          setTimeout(() => this.conn.sftp(onSftp), Math.min(20 * refusals, 500));
          return;
        }
        if (err) {
          this.sftpSession = undefined;
          reject(new SshConnectError(this.label, `could not start the SFTP subsystem: ${err.message}`, { cause: err, hint: 'enable "Subsystem sftp" in the host\'s sshd_config' }));
          return;
        }
        sftp.on('close', () => {
          this.sftpSession = undefined;
        });
        resolve(sftp);
      };
      this.conn.sftp(onSftp);
    });
    return this.sftpSession;
  }

  /**
   * A stream to a unix socket on the host, through OpenSSH stream-local forwarding
   * (`direct-streamlocal@openssh.com`; sshd's AllowStreamLocalForwarding, on by default): how an API
   * that listens only on a host's unix socket (Firecracker's) is reached without exposing a TCP port.
   * Not a session, so it does not count against the channel limit. The socket missing or refused
   * rejects with SshConnectError.
   */
  openUnixStream(socketPath: string): Promise<ClientChannel> {
    if (this.closedFlag) return Promise.reject(new SshConnectError(this.label, `the connection is closed; cannot open ${socketPath}`));
    return new Promise<ClientChannel>((resolve, reject) => {
      try {
        this.conn.openssh_forwardOutStreamLocal(socketPath, (err, stream) => {
          if (err) reject(new SshConnectError(this.label, `could not open a stream to ${socketPath}: ${err.message}`, { cause: err, hint: 'the socket may not exist (yet); sshd must allow stream-local forwarding (AllowStreamLocalForwarding)' }));
          else resolve(stream);
        });
      } catch (err) {
        reject(new SshConnectError(this.label, `could not open a stream to ${socketPath}: ${(err as Error).message}`, { cause: err }));
      }
    });
  }

  /** Close the connection; resolves once the socket is closed. Safe to call twice. */
  async close(): Promise<void> {
    if (this.cleanups.size > 0) await Promise.race([Promise.allSettled(this.cleanups), sleep(7000, undefined, { ref: false })]);
    if (this.closedFlag) return;
    return new Promise((resolve) => {
      this.onClose(resolve);
      this.conn.end();
      // A server that never answers the disconnect must not keep the process alive.
      setTimeout(() => this.conn.destroy(), 2000).unref();
    });
  }
}
