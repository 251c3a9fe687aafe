/**
 * A small process supervisor: it keeps a set of daemons running, restarting one that ended with
 * an exponential backoff, and says so — a process that keeps crashing is flagged as a crash loop
 * (and still retried, at the longest backoff), one that refused to run (its `refusedExit` code:
 * a worker missing its tools) is left stopped with its reason. It records what it knows in plain
 * records (`ProcessRecord`) that the owner persists on every change, so another supervisor can
 * adopt the same processes later: a live pid is watched (by polling, as it is not its child), a
 * dead one is started again.
 *
 * Generic on purpose: the embedded stack (src/temporal/stack.ts) says what to run.
 */
import type { ChildProcess } from 'node:child_process';
import { isOurProcess, logTail, startDaemon, stopProcess } from './daemon';
import { logger as rootLogger, type Logger } from '../log';

/**
 * starting: started, not yet known to serve · running · backoff: ended, restarts at nextStartAt ·
 * waiting: not started until its gate opens (workers wait for the server) · refused: ended with
 * its refusal code, not restarted · stopped: stopped on purpose.
 */
export type ProcessState = 'starting' | 'running' | 'backoff' | 'waiting' | 'refused' | 'stopped';

export interface ExitRecord {
  /** Exit code; null when killed by a signal, or when it ended unwatched (adopted, or nobody supervised). */
  code: number | null;
  signal: string | null;
  at: string;
  /** How long that run lasted. */
  ranMs: number;
}

/** What the supervisor knows of one process; persisted by its owner (stack.json). */
export interface ProcessRecord {
  pid?: number;
  startedAt?: string;
  state?: ProcessState;
  /** Times it was started again after it ended. */
  restarts?: number;
  /** Runs in a row that ended before `stableMs`: the crash-loop counter. */
  crashes?: number;
  lastExit?: ExitRecord;
  nextStartAt?: string;
  /** Why it does not run, in its own words (the last lines of its log). */
  reason?: string;
}

export interface RestartPolicy {
  /** Delay before the first restart; doubled for each crash in a row. */
  initialMs: number;
  maxMs: number;
  /** A run this long is a success: the crash counter starts again. */
  stableMs: number;
  /** Crashes in a row from which it is reported as a crash loop. */
  crashLoopAfter: number;
}

export const RESTART_POLICY: RestartPolicy = { initialMs: 500, maxMs: 30_000, stableMs: 60_000, crashLoopAfter: 5 };

/** Delay before restarting after the `crashes`-th crash in a row: 0.5 s, 1 s, 2 s, … up to 30 s. */
export function restartDelayMs(crashes: number, policy: RestartPolicy = RESTART_POLICY): number {
  return Math.min(policy.maxMs, policy.initialMs * 2 ** Math.max(0, crashes - 1));
}

export function isCrashLooping(record: ProcessRecord | undefined, policy: RestartPolicy = RESTART_POLICY): boolean {
  return (record?.crashes ?? 0) >= policy.crashLoopAfter;
}

/** How an exit reads for people: "exit code 1", "signal SIGKILL", "ended while unwatched". */
export function describeExit(exit: ExitRecord): string {
  if (exit.signal) return `signal ${exit.signal}`;
  if (exit.code !== null) return `exit code ${exit.code}`;
  return 'ended while unwatched';
}

export interface ChildSpec {
  /** Its key in the records. */
  key: string;
  /** For logs: "the Temporal dev server", "worker pool kvm". */
  label: string;
  argv: readonly string[];
  env?: NodeJS.ProcessEnv;
  logFile: string;
  /** Found in its command line: a recycled pid is never taken for it. */
  marker: string;
  /** Exit code meaning "cannot run here" (missing tools): reported, not restarted. */
  refusedExit?: number;
  /** Started (and restarted) only while this holds; e.g. workers wait for the server. */
  gate?: () => boolean;
  /** Resolves once process `pid` serves (until then: starting); a rejection kills it as a failed start. */
  ready?: (pid: number, alive: () => boolean) => Promise<void>;
  /** Without `ready`: alive this long counts as started. @default 4000 */
  settleMs?: number;
  /** SIGTERM grace before SIGKILL on stop. @default 10000 */
  stopGraceMs?: number;
  /** Stopped in ascending order (workers 0, then the codec endpoint 1, the server last 2). @default 0 */
  stopOrder?: number;
}

export interface SupervisorOptions {
  /** Records to adopt (a previous supervisor's); missing keys start fresh. */
  records?: Record<string, ProcessRecord>;
  /** Detached children outlive the supervisor (the daemon); attached ones share its process group (kubedos dev). */
  detached: boolean;
  /** Start processes that refused last time again (an explicit `kubedos stack start`). @default false */
  retryRefused?: boolean;
  /** Called after every change of the records (persist them). */
  onChange?: (records: Record<string, ProcessRecord>) => void;
  /** Called on every tick (look for requests). */
  onTick?: () => void;
  policy?: RestartPolicy;
  log?: Logger;
  /** @default 250 */
  tickMs?: number;
}

interface Entry {
  spec: ChildSpec;
  record: ProcessRecord;
  child?: ChildProcess;
  /** pid of a process we did not start (watched by polling). */
  adopted?: number;
  stopping?: boolean;
}

export class Supervisor {
  private readonly entries = new Map<string, Entry>();
  private readonly policy: RestartPolicy;
  private readonly log: Logger;
  private timer?: NodeJS.Timeout;
  private stopping = false;

  constructor(private readonly options: SupervisorOptions) {
    this.policy = options.policy ?? RESTART_POLICY;
    this.log = options.log ?? rootLogger.child({ component: 'supervisor' });
  }

  /** The records as they are now (copies). */
  records(): Record<string, ProcessRecord> {
    return Object.fromEntries([...this.entries].map(([k, e]) => [k, { ...e.record }]));
  }

  record(key: string): ProcessRecord | undefined {
    return this.entries.get(key)?.record;
  }

  /** Take a process under supervision: adopt it when it runs, else start it (now, or once its gate opens). */
  add(spec: ChildSpec): void {
    if (this.entries.has(spec.key)) return;
    const record: ProcessRecord = { ...(this.options.records?.[spec.key] ?? {}) };
    const entry: Entry = { spec, record };
    this.entries.set(spec.key, entry);
    if (record.pid && isOurProcess(record.pid, spec.marker)) {
      entry.adopted = record.pid;
      const started = record.startedAt ? Date.parse(record.startedAt) : 0;
      record.state = spec.ready ? 'starting' : Date.now() - started >= (spec.settleMs ?? 4_000) ? 'running' : 'starting';
      record.nextStartAt = undefined;
      this.log.info({ pid: record.pid }, `adopted ${spec.label}`);
      if (spec.ready) this.awaitReady(entry, record.pid);
    } else if (record.state === 'refused' && !this.options.retryRefused) {
      // Left as it is: it said it cannot run here; `kubedos stack start` tries again.
    } else if (record.pid && (record.state === 'running' || record.state === 'starting')) {
      // It was running and ended while nothing watched it (the supervisor itself was gone).
      this.exited(entry, null, null);
    } else {
      record.state = 'waiting';
      record.nextStartAt = undefined;
      this.startIfDue(entry);
    }
    this.changed();
  }

  /** Begin the supervision loop. */
  run(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.tick(), this.options.tickMs ?? 250);
  }

  /** Start again, now, everything that refused or is backing off (its counters reset). */
  retry(): void {
    for (const entry of this.entries.values()) {
      const r = entry.record;
      if (r.state === 'refused' || r.state === 'backoff') {
        r.crashes = 0;
        r.reason = undefined;
        r.state = 'waiting';
        r.nextStartAt = undefined;
        this.startIfDue(entry);
      }
    }
    this.changed();
  }

  /** Stop supervising and leave every process running (another supervisor takes over). */
  detach(): void {
    this.stopping = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    for (const e of this.entries.values()) {
      e.child?.removeAllListeners('exit');
      e.child?.unref();
    }
  }

  /** Stop every process (in `stopOrder`) and the loop. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    const orders = [...new Set([...this.entries.values()].map((e) => e.spec.stopOrder ?? 0))].sort((a, b) => a - b);
    for (const order of orders) {
      await Promise.all(
        [...this.entries.values()]
          .filter((e) => (e.spec.stopOrder ?? 0) === order)
          .map(async (e) => {
            e.stopping = true;
            if (e.record.pid) await stopProcess(e.record.pid, e.spec.marker, e.spec.stopGraceMs ?? 10_000);
            e.record.state = 'stopped';
            e.record.nextStartAt = undefined;
          }),
      );
    }
    this.changed();
  }

  private changed(): void {
    this.options.onChange?.(this.records());
  }

  private tick(): void {
    if (this.stopping) return;
    const now = Date.now();
    for (const entry of this.entries.values()) {
      const r = entry.record;
      if (entry.adopted && !isOurProcess(entry.adopted, entry.spec.marker)) {
        entry.adopted = undefined;
        this.exited(entry, null, null);
        this.changed();
      }
      if ((r.state === 'backoff' || r.state === 'waiting') && this.startIfDue(entry)) this.changed();
      const started = r.startedAt ? Date.parse(r.startedAt) : now;
      if (r.state === 'starting' && !entry.spec.ready && now - started >= (entry.spec.settleMs ?? 4_000)) {
        r.state = 'running';
        this.changed();
      }
      if (r.state === 'running' && (r.crashes ?? 0) > 0 && now - started >= this.policy.stableMs) {
        if (isCrashLooping(r, this.policy)) this.log.info({ pid: r.pid }, `${entry.spec.label} has run ${Math.round(this.policy.stableMs / 1000)} s without crashing: no longer a crash loop`);
        r.crashes = 0;
        r.reason = undefined;
        this.changed();
      }
    }
    this.options.onTick?.();
  }

  /** Start it when its backoff is over and its gate is open; true when it was started. */
  private startIfDue(entry: Entry): boolean {
    const r = entry.record;
    if (this.stopping) return false;
    if (r.state === 'backoff' && r.nextStartAt && Date.parse(r.nextStartAt) > Date.now()) return false;
    if (entry.spec.gate && !entry.spec.gate()) {
      if (r.state !== 'backoff') r.state = 'waiting';
      return false;
    }
    const restart = r.state === 'backoff';
    let child: ChildProcess & { pid: number };
    try {
      child = startDaemon(entry.spec.argv, { logFile: entry.spec.logFile, env: entry.spec.env, detached: this.options.detached });
    } catch (err) {
      this.log.error({ error: (err as Error).message }, `cannot start ${entry.spec.label}`);
      r.lastExit = { code: null, signal: null, at: new Date().toISOString(), ranMs: 0 };
      this.backoff(entry, `cannot start: ${(err as Error).message}`);
      return true;
    }
    entry.child = child;
    entry.adopted = undefined;
    r.pid = child.pid;
    r.startedAt = new Date().toISOString();
    r.state = 'starting';
    r.nextStartAt = undefined;
    if (restart) r.restarts = (r.restarts ?? 0) + 1;
    this.log.info({ pid: child.pid, restarts: r.restarts ?? 0 }, `${restart ? 'restarted' : 'started'} ${entry.spec.label}`);
    const pid = child.pid;
    child.once('exit', (code, signal) => {
      if (entry.child !== child) return;
      entry.child = undefined;
      this.exited(entry, code, signal);
      this.changed();
    });
    if (entry.spec.ready) this.awaitReady(entry, pid);
    return true;
  }

  private awaitReady(entry: Entry, pid: number): void {
    const alive = () => entry.record.pid === pid && isOurProcess(pid, entry.spec.marker);
    entry.spec.ready!(pid, alive).then(
      () => {
        if (entry.record.pid !== pid || entry.record.state !== 'starting') return;
        entry.record.state = 'running';
        this.log.info({ pid }, `${entry.spec.label} is ready`);
        this.changed();
      },
      (err: unknown) => {
        if (entry.record.pid !== pid || !alive() || this.stopping) return;
        // Alive but never ready: wedged. Killed, it counts as a crash like any other.
        this.log.error({ pid, error: (err as Error).message }, `${entry.spec.label} never became ready: killing it`);
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone meanwhile */
        }
      },
    );
  }

  private exited(entry: Entry, code: number | null, signal: NodeJS.Signals | null): void {
    const r = entry.record;
    const at = Date.now();
    const ranMs = r.startedAt ? at - Date.parse(r.startedAt) : 0;
    r.lastExit = { code, signal, at: new Date(at).toISOString(), ranMs };
    if (this.stopping || entry.stopping) {
      r.state = 'stopped';
      return;
    }
    if (entry.spec.refusedExit !== undefined && code === entry.spec.refusedExit) {
      r.state = 'refused';
      r.crashes = 0;
      r.nextStartAt = undefined;
      r.reason = logTail(entry.spec.logFile, 3);
      this.log.warn({ pid: r.pid, log: entry.spec.logFile }, `${entry.spec.label} refused to run (exit ${code}): not restarted; \`kubedos stack start\` tries again once it is fixed: ${r.reason.split('\n').pop()}`);
      return;
    }
    r.crashes = ranMs >= this.policy.stableMs ? 1 : (r.crashes ?? 0) + 1;
    this.backoff(entry, describeExit(r.lastExit));
  }

  private backoff(entry: Entry, why: string): void {
    const r = entry.record;
    r.crashes = Math.max(1, r.crashes ?? 0);
    const delay = restartDelayMs(r.crashes, this.policy);
    r.state = 'backoff';
    r.nextStartAt = new Date(Date.now() + delay).toISOString();
    const fields = { pid: r.pid, crashes: r.crashes, log: entry.spec.logFile };
    if (isCrashLooping(r, this.policy)) {
      r.reason = logTail(entry.spec.logFile, 3);
      this.log.error(fields, `${entry.spec.label} is crash-looping: ${r.crashes} crashes in a row, each within ${Math.round(this.policy.stableMs / 1000)} s (last: ${why}); restarting in ${delay / 1000} s`);
    } else {
      this.log.warn(fields, `${entry.spec.label} ended (${why}); restarting in ${delay / 1000} s`);
    }
  }
}
