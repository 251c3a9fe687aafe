/**
 * The machine a driver works on: this one, or one reached over SSH. Drivers build argv arrays
 * (with the per-tool modules in src/foundry/tools) and files, and a host runs and stores them the
 * same way in both places: locally through the tool runner and node:fs; remotely through the SSH
 * layer (argv quoted by it, never concatenated here; files over SFTP; large files by a verified,
 * resumable upload).
 */
import { constants, promises as fs } from 'node:fs';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { ToolFailedError, UploadDigestMismatchError } from '../errors';
import { isOurProcess, processArgv, stopProcess } from '../exec/daemon';
import { probeAccel } from '../exec/probe';
import { runTool } from '../exec/run';
import { SshPool, uploadFile, type SshClient, type SshTarget } from '../ssh';
import { sha256OfFile } from '../store/transfer';
import type { DriverContext } from './driver';

export interface HostRunOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

export interface HostRunResult {
  stdout: string;
  stderr: string;
}

/** A file to put on the host, already verified where it is. */
export interface HostFileSource {
  path: string;
  sha256: string;
  size: number;
}

export interface TargetHost {
  /** `local`, or `user@host:port`. */
  readonly label: string;
  /** True for this machine. */
  readonly local: boolean;
  /** Where this worker reaches ports the host forwards to guests. */
  readonly address: string;
  /** Address the host binds forwarded ports to: loopback locally, every address remotely. */
  readonly forwardBind: string;
  /** Run argv; rejects (ToolFailedError / RemoteCommandFailedError) on a non-zero exit. */
  run(argv: readonly string[], options?: HostRunOptions): Promise<HostRunResult>;
  /** The host's own directory for KubeDos state, when it is not the local state directory. */
  homeStateDir(targetName: string, signal?: AbortSignal): Promise<string>;
  /** A file's contents, or undefined when it does not exist. */
  readFile(file: string): Promise<Buffer | undefined>;
  /** Write through a temporary name and rename, so readers never see half a file. */
  writeFile(file: string, data: string | Buffer, mode?: number): Promise<void>;
  mkdir(dir: string, mode?: number): Promise<void>;
  /** Names in a directory; [] when it does not exist. */
  readdir(dir: string): Promise<string[]>;
  exists(file: string): Promise<boolean>;
  /** Remove a file or a whole tree; absent is fine. */
  remove(target: string): Promise<void>;
  /**
   * Make `dest` hold exactly `source`'s bytes (verified), once: a dest that already has them is
   * kept. Locally a hard link (or a verified copy); remotely a resumable, verified upload.
   */
  putFile(source: HostFileSource, dest: string, mode: number, ctx: DriverContext): Promise<void>;
  /** True when `pid` is a live (non-zombie) process whose argv contains `marker`. */
  isRunning(pid: number, marker: string): Promise<boolean>;
  /** SIGTERM, wait up to graceMs, SIGKILL; only if `pid` is ours (see isRunning). */
  stop(pid: number, marker: string, graceMs: number): Promise<void>;
  /** A stream to a unix socket on the host, when this host can open one (QMP). */
  connectUnix?(socketPath: string): Promise<Duplex>;
  /** KVM when /dev/kvm is usable there, else TCG. */
  accel(): Promise<{ mode: 'kvm' | 'tcg'; reason: string }>;
  close(): Promise<void>;
}

async function writeAtomically(file: string, data: string | Buffer, mode: number): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  await fs.writeFile(tmp, data, { mode });
  await fs.chmod(tmp, mode);
  await fs.rename(tmp, file);
}

/** This machine. */
export class LocalHost implements TargetHost {
  readonly label = 'local';
  readonly local = true;
  readonly address = '127.0.0.1';
  readonly forwardBind = '127.0.0.1';

  run(argv: readonly string[], options: HostRunOptions = {}): Promise<HostRunResult> {
    return runTool(argv, { signal: options.signal, timeoutMs: options.timeoutMs });
  }

  async homeStateDir(): Promise<string> {
    throw new Error('the local host keeps its state in the local state directory');
  }

  async readFile(file: string): Promise<Buffer | undefined> {
    try {
      return await fs.readFile(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  writeFile(file: string, data: string | Buffer, mode = 0o644): Promise<void> {
    return writeAtomically(file, data, mode);
  }

  async mkdir(dir: string, mode = 0o700): Promise<void> {
    await fs.mkdir(dir, { recursive: true, mode });
  }

  async readdir(dir: string): Promise<string[]> {
    return fs.readdir(dir).catch(() => []);
  }

  async exists(file: string): Promise<boolean> {
    return fs.access(file, constants.F_OK).then(() => true, () => false);
  }

  async remove(target: string): Promise<void> {
    await fs.rm(target, { recursive: true, force: true });
  }

  async putFile(source: HostFileSource, dest: string, mode: number, ctx: DriverContext): Promise<void> {
    const st = await fs.stat(dest).catch(() => undefined);
    // Only ever put in place verified (below): a file of the right size there is the one.
    if (st?.isFile() && st.size === source.size) return;
    const tmp = `${dest}.partial-${process.pid}`;
    await fs.rm(tmp, { force: true });
    try {
      // A hard link shares the verified inode: nothing to copy, nothing to re-check.
      await fs.link(source.path, tmp);
    } catch {
      await fs.copyFile(source.path, tmp);
      const got = await sha256OfFile(tmp, { signal: ctx.signal, onProgress: (p) => ctx.progress?.({ step: 'verify copy', done: p.bytes, total: p.total }) });
      if (got.sha256 !== source.sha256) {
        await fs.rm(tmp, { force: true });
        throw new UploadDigestMismatchError(`copy ${dest}`, source.sha256, got.sha256, 'the local copy was damaged while it was written; the step is retried');
      }
    }
    await fs.chmod(tmp, mode);
    await fs.rename(tmp, dest);
  }

  async isRunning(pid: number, marker: string): Promise<boolean> {
    return isOurProcess(pid, marker);
  }

  stop(pid: number, marker: string, graceMs: number): Promise<void> {
    return stopProcess(pid, marker, graceMs);
  }

  async connectUnix(socketPath: string): Promise<Duplex> {
    const net = await import('node:net');
    return new Promise((resolve, reject) => {
      const s = net.connect({ path: socketPath });
      s.once('connect', () => resolve(s));
      s.once('error', reject);
    });
  }

  accel(): Promise<{ mode: 'kvm' | 'tcg'; reason: string }> {
    return probeAccel();
  }

  async close(): Promise<void> {}

  /** The argv of a local process (for tests and diagnostics). */
  static argvOf(pid: number): string[] | undefined {
    return processArgv(pid);
  }
}

/** KVM is usable on a host when /dev/kvm opens read-write and the CPU has vmx/svm (constant script). */
const REMOTE_ACCEL_SCRIPT = 'test -r /dev/kvm && test -w /dev/kvm || { echo "no usable /dev/kvm"; exit 1; }; grep -qwE "vmx|svm" /proc/cpuinfo || { echo "CPU has no vmx/svm"; exit 1; }';

/** A host reached over SSH (pinned host key), through a pool of connections. */
export class SshHost implements TargetHost {
  readonly local = false;
  readonly label: string;
  readonly address: string;
  readonly forwardBind = '';
  private readonly pool = new SshPool();

  constructor(private readonly target: SshTarget) {
    this.label = `${target.user ?? 'root'}@${target.host}:${target.port ?? 22}`;
    this.address = target.host;
  }

  private use<T>(fn: (client: SshClient) => Promise<T>, signal?: AbortSignal): Promise<T> {
    return this.pool.use(this.target, fn, { signal });
  }

  async run(argv: readonly string[], options: HostRunOptions = {}): Promise<HostRunResult> {
    const r = await this.use((c) => c.run(argv, { signal: options.signal, timeoutMs: options.timeoutMs }), options.signal);
    return { stdout: r.stdout, stderr: r.stderr };
  }

  private exec(argv: readonly string[], signal?: AbortSignal) {
    return this.use((c) => c.exec(argv, { signal, timeoutMs: 60_000 }), signal);
  }

  async homeStateDir(targetName: string, signal?: AbortSignal): Promise<string> {
    const { stdout } = await this.run(['printenv', 'HOME'], { signal, timeoutMs: 30_000 });
    const home = stdout.trim() || '/root';
    return `${home.replace(/\/+$/, '')}/.local/state/kubedos/targets/${targetName}`;
  }

  private sftpCall<T>(op: (sftp: import('ssh2').SFTPWrapper, cb: (err: Error | null | undefined, v?: T) => void) => void): Promise<T> {
    return this.use(async (c) => {
      const sftp = await c.sftp();
      return new Promise<T>((resolve, reject) => op(sftp, (err, v) => (err ? reject(err) : resolve(v as T))));
    });
  }

  async readFile(file: string): Promise<Buffer | undefined> {
    try {
      return await this.sftpCall<Buffer>((sftp, cb) => sftp.readFile(file, cb as (err: Error | undefined, data: Buffer) => void));
    } catch (err) {
      if ((err as { code?: unknown }).code === 2) return undefined; // SSH_FX_NO_SUCH_FILE
      throw err;
    }
  }

  async writeFile(file: string, data: string | Buffer, mode = 0o644): Promise<void> {
    const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    await this.sftpCall<void>((sftp, cb) => sftp.writeFile(tmp, data, { mode }, cb));
    await this.sftpCall<void>((sftp, cb) => sftp.chmod(tmp, mode, cb));
    // posix-rename@openssh.com replaces an existing file, as rename(2) does.
    await this.sftpCall<void>((sftp, cb) => sftp.ext_openssh_rename(tmp, file, cb));
  }

  async mkdir(dir: string, mode = 0o700): Promise<void> {
    await this.run(['mkdir', '-p', '-m', mode.toString(8), '--', dir], { timeoutMs: 30_000 });
  }

  async readdir(dir: string): Promise<string[]> {
    try {
      const list = await this.sftpCall<Array<{ filename: string }>>((sftp, cb) => sftp.readdir(dir, cb as (err: Error | undefined, l: Array<{ filename: string }>) => void));
      return list.map((e) => e.filename).filter((n) => n !== '.' && n !== '..');
    } catch (err) {
      if ((err as { code?: unknown }).code === 2) return [];
      throw err;
    }
  }

  async exists(file: string): Promise<boolean> {
    try {
      await this.sftpCall((sftp, cb) => sftp.lstat(file, cb));
      return true;
    } catch (err) {
      if ((err as { code?: unknown }).code === 2) return false;
      throw err;
    }
  }

  async remove(target: string): Promise<void> {
    await this.run(['rm', '-rf', '--', target], { timeoutMs: 120_000 });
  }

  async putFile(source: HostFileSource, dest: string, mode: number, ctx: DriverContext): Promise<void> {
    await this.use(
      (c) =>
        uploadFile(c, source.path, dest, {
          sha256: source.sha256,
          signal: ctx.signal,
          mode,
          onProgress: (p) => ctx.progress?.({ step: p.phase === 'upload' ? 'upload' : 'verify upload', done: p.bytes, total: p.total }),
        }),
      ctx.signal,
    );
  }

  /** `/proc/<pid>/stat` and `cmdline` in one read: alive, not a zombie, and ours. */
  async isRunning(pid: number, marker: string): Promise<boolean> {
    const r = await this.exec(['cat', `/proc/${pid}/stat`, `/proc/${pid}/cmdline`]);
    if (r.exitCode !== 0) return false;
    const nl = r.stdout.indexOf('\n');
    if (nl < 0 || /\) Z /.test(r.stdout.slice(0, nl))) return false;
    return r.stdout.slice(nl + 1).split('\0').some((arg) => arg.includes(marker));
  }

  async stop(pid: number, marker: string, graceMs: number): Promise<void> {
    if (!(await this.isRunning(pid, marker))) return;
    await this.exec(['kill', '-TERM', String(pid)]);
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline) {
      if (!(await this.isRunning(pid, marker))) return;
      await sleep(250);
    }
    await this.exec(['kill', '-KILL', String(pid)]);
    for (let i = 0; i < 40 && (await this.isRunning(pid, marker)); i++) await sleep(250);
  }

  /**
   * A stream to a unix socket on the host by SSH stream-local forwarding (an API socket such as
   * Firecracker's); the pooled connection stays leased until the stream closes.
   */
  async streamLocal(socketPath: string, signal?: AbortSignal): Promise<Duplex> {
    const lease = await this.pool.acquire(this.target, { signal });
    try {
      const stream = await lease.client.openUnixStream(socketPath);
      stream.once('close', () => lease.release());
      return stream;
    } catch (err) {
      lease.release();
      throw err;
    }
  }

  async accel(): Promise<{ mode: 'kvm' | 'tcg'; reason: string }> {
    const r = await this.exec(['sh', '-c', REMOTE_ACCEL_SCRIPT]);
    return r.exitCode === 0 ? { mode: 'kvm', reason: `/dev/kvm usable on ${this.label}` } : { mode: 'tcg', reason: `${r.stdout.trim() || 'no KVM'} on ${this.label}` };
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

/** Whether an error is a tool's failure (local or remote), for callers that inspect stderr. */
export function commandStderr(err: unknown): string | undefined {
  if (err instanceof ToolFailedError) return err.stderrTail;
  const tail = (err as { stderrTail?: unknown }).stderrTail;
  return typeof tail === 'string' ? tail : undefined;
}
