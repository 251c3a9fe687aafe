/**
 * The one place KubeDos runs external programs. Per-tool modules build argv arrays and call
 * `runTool`; nothing else spawns processes. No shell, stdin closed, a clean and reproducible
 * environment, cancellation through an AbortSignal, failures mapped to typed errors.
 */
import execa from 'execa';
import { CancelledError, ToolFailedError, ToolMissingError } from '../errors';
import { logger } from '../log';

export interface RunOptions {
  /** Working directory. @default process.cwd() */
  cwd?: string;
  /** Extra environment on top of the clean base environment. */
  env?: Record<string, string>;
  /** SOURCE_DATE_EPOCH for reproducible output; omitted when undefined. */
  sourceDateEpoch?: number;
  /** Cancels the run: the child gets SIGTERM, then SIGKILL after `killGraceMs`. */
  signal?: AbortSignal;
  /** @default 5000 */
  killGraceMs?: number;
  /** Bytes written to the child's stdin; stdin is closed (ignored) when omitted. */
  input?: string | Buffer;
  /** Called with each chunk of stdout/stderr as it arrives (for progress and heartbeats). */
  onOutput?: (stream: 'stdout' | 'stderr', chunk: string) => void;
  /** Give up after this many milliseconds. */
  timeoutMs?: number;
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** Environment every tool sees: nothing inherited but PATH and HOME, fixed locale and zone. */
export function cleanEnv(extra: Record<string, string> = {}, sourceDateEpoch?: number): Record<string, string> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: process.env.HOME ?? '/root',
    LANG: 'C.UTF-8',
    LC_ALL: 'C.UTF-8',
    TZ: 'UTC',
  };
  if (sourceDateEpoch !== undefined) env.SOURCE_DATE_EPOCH = String(sourceDateEpoch);
  return { ...env, ...extra };
}

const STDERR_TAIL_LINES = 20;

function tail(text: string, lines = STDERR_TAIL_LINES): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

/** Run `argv[0]` with `argv.slice(1)`; resolves with its output or rejects with a typed error. */
export async function runTool(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const [file, ...args] = argv;
  if (!file) throw new TypeError('runTool: empty argv');
  if (options.signal?.aborted) throw new CancelledError(file);
  logger.debug({ argv, cwd: options.cwd }, 'exec');

  const child = execa(file, args, {
    // Its own process group, so cancellation reaches every descendant (mmdebstrap forks).
    detached: true,
    cwd: options.cwd,
    env: cleanEnv(options.env, options.sourceDateEpoch),
    extendEnv: false,
    input: options.input,
    stdin: options.input === undefined ? 'ignore' : 'pipe',
    // No execa `timeout`: it signals only the direct child and then waits for pipes that its
    // descendants still hold open. The timer below ends the whole process group instead.
    reject: false,
    stripFinalNewline: false,
    windowsHide: true,
  });

  const group = child.pid;
  if (group !== undefined) liveGroups.add(group);
  let forceKill: NodeJS.Timeout | undefined;
  const endGroup = () => {
    if (group === undefined || forceKill) return;
    signalGroup(group, 'SIGTERM');
    forceKill = setTimeout(() => signalGroup(group, 'SIGKILL'), options.killGraceMs ?? 5000);
  };
  options.signal?.addEventListener('abort', endGroup, { once: true });
  let timedOut = false;
  const deadline =
    options.timeoutMs === undefined
      ? undefined
      : setTimeout(() => {
          timedOut = true;
          endGroup();
        }, options.timeoutMs);
  if (options.onOutput) {
    child.stdout?.on('data', (chunk: Buffer) => options.onOutput?.('stdout', chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => options.onOutput?.('stderr', chunk.toString()));
  }

  try {
    const result = await child;
    if (options.signal?.aborted) throw new CancelledError(file);
    const spawnError = (result as { originalMessage?: string; code?: string }).code;
    if (spawnError === 'ENOENT') throw new ToolMissingError(file);
    if (result.failed || timedOut) {
      throw new ToolFailedError(
        file,
        argv,
        result.exitCode,
        timedOut ? 'timeout' : result.signal,
        tail(String(result.stderr ?? '')),
      );
    }
    return { stdout: String(result.stdout), stderr: String(result.stderr) };
  } finally {
    if (deadline) clearTimeout(deadline);
    options.signal?.removeEventListener('abort', endGroup);
    if (group !== undefined) {
      liveGroups.delete(group);
      // Leave nothing behind: descendants that outlived the main process go with it.
      if (options.signal?.aborted || timedOut) {
        if (forceKill) clearTimeout(forceKill);
        signalGroup(group, 'SIGKILL');
      }
    }
  }
}

/** Process groups of tools still running, killed if this process exits first. */
const liveGroups = new Set<number>();
process.once('exit', () => {
  for (const group of liveGroups) signalGroup(group, 'SIGKILL');
});

function signalGroup(group: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-group, signal);
  } catch {
    /* the group is gone */
  }
}

/** Find an executable on PATH (or at an absolute path); undefined when absent. */
export async function which(name: string): Promise<string | undefined> {
  const { access, constants } = await import('node:fs/promises');
  const path = await import('node:path');
  const candidates = name.includes('/')
    ? [name]
    : (process.env.PATH ?? '').split(':').filter(Boolean).map((dir) => path.join(dir, name));
  for (const candidate of candidates) {
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      /* keep looking */
    }
  }
  return undefined;
}
