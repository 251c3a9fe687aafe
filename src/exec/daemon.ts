/**
 * Long-running background processes (the embedded Temporal server, worker pools). Run-to-completion
 * tools go through runTool in run.ts; this is the one place daemons are started and stopped.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, closeSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface DaemonOptions {
  /** stdout and stderr are appended here. */
  logFile: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Detached daemons outlive the CLI; attached ones share its process group and die with Ctrl-C. */
  detached: boolean;
}

/**
 * Start argv in the background with output appended to a log file; returns the child, whose
 * `exit` event (code, signal) a supervisor watches while it lives. A detached child is unref'd:
 * it outlives its parent, and does not keep the parent's event loop alive.
 */
export function startDaemon(argv: readonly string[], options: DaemonOptions): ChildProcess & { pid: number } {
  const [file, ...args] = argv;
  if (!file) throw new TypeError('spawnDaemon: empty argv');
  mkdirSync(path.dirname(options.logFile), { recursive: true });
  const fd = openSync(options.logFile, 'a');
  try {
    const child = spawn(file, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      detached: options.detached,
      stdio: ['ignore', fd, fd],
    });
    // A program that cannot be started reports it here (asynchronously) as well as by having no pid.
    child.on('error', () => undefined);
    if (child.pid === undefined) throw new Error(`could not start ${file}`);
    if (options.detached) child.unref();
    return child as ChildProcess & { pid: number };
  } finally {
    closeSync(fd);
  }
}

/** Start argv in the background with output appended to a log file; returns the pid. */
export function spawnDaemon(argv: readonly string[], options: DaemonOptions): number {
  return startDaemon(argv, options).pid;
}

/** The argv of a running process, or undefined if it is gone. */
export function processArgv(pid: number): string[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return undefined;
  }
}

/**
 * Live processes (zombies excluded) whose argv satisfies `match`: finds what a caller killed
 * between starting a process and recording its pid left running.
 */
export function processesMatching(match: (argv: readonly string[]) => boolean): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const argv = processArgv(pid);
    if (argv && match(argv) && !isZombie(pid)) pids.push(pid);
  }
  return pids;
}

function isZombie(pid: number): boolean {
  try {
    return /\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

/**
 * True when pid is alive AND its command line contains `marker`, so a recycled pid belonging to
 * some other program is never mistaken for (or killed as) ours.
 */
export function isOurProcess(pid: number, marker: string): boolean {
  const argv = processArgv(pid);
  if (!argv || isZombie(pid)) return false; // a zombie is dead for our purposes
  return argv.some((arg) => arg.includes(marker));
}

/** SIGTERM, wait up to graceMs, then SIGKILL. Resolves once the process is gone. */
export async function stopProcess(pid: number, marker: string, graceMs = 10_000): Promise<void> {
  if (!isOurProcess(pid, marker)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!isOurProcess(pid, marker)) return;
    await sleep(100);
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* already gone */
  }
  while (isOurProcess(pid, marker)) await sleep(50);
}

/** The last lines of a log file, for error messages. */
export function logTail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}
