/**
 * The process supervisor with real processes (small `node -e` programs): restart with backoff
 * after a crash, a crash loop flagged and still retried, a refusal left stopped with its reason,
 * adoption of a running process by a second supervisor (and a restart once it dies), the gate,
 * stop and detach.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isOurProcess } from '../../src/exec/daemon';
import { isCrashLooping, restartDelayMs, RESTART_POLICY, Supervisor, type ChildSpec, type ProcessRecord, type RestartPolicy } from '../../src/exec/supervisor';
import type { Logger } from '../../src/log';

const FAST: RestartPolicy = { initialMs: 50, maxMs: 400, stableMs: 1_500, crashLoopAfter: 3 };
const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined, child: () => quiet };

let dir: string;
const supervisors: Supervisor[] = [];
const pids = new Set<number>();

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'kubedos-supervisor-'));
});

afterAll(async () => {
  for (const s of supervisors) await s.stop().catch(() => undefined);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

/** A child running `script`, found by a marker of its own. */
function spec(key: string, script: string, extra: Partial<ChildSpec> = {}): ChildSpec {
  const marker = `supervisor-test-${randomUUID()}`;
  return { key, label: key, argv: [process.execPath, '-e', script, marker], logFile: path.join(dir, `${key}.log`), marker, settleMs: 100, ...extra };
}

const LIVES = 'setInterval(() => {}, 1000)';

function supervisor(records?: Record<string, ProcessRecord>, extra: Partial<ConstructorParameters<typeof Supervisor>[0]> = {}): Supervisor {
  const s = new Supervisor({ detached: true, policy: FAST, log: quiet, tickMs: 25, records, ...extra });
  supervisors.push(s);
  return s;
}

async function until<T>(what: string, fn: () => T | undefined | false, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

test('restart delays: 0.5 s doubling to 30 s; a crash loop from 5 crashes in a row', () => {
  expect([1, 2, 3, 4, 5, 6, 7, 8].map((n) => restartDelayMs(n))).toEqual([500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
  expect(RESTART_POLICY.stableMs).toBe(60_000);
  expect(isCrashLooping({ crashes: 4 })).toBe(false);
  expect(isCrashLooping({ crashes: 5 })).toBe(true);
});

test('a killed process is restarted with a new pid, and the restart is counted', async () => {
  const s = supervisor();
  const child = spec('worker', LIVES);
  s.add(child);
  s.run();
  const first = await until('running', () => s.record('worker')?.state === 'running' && s.record('worker')!.pid);
  pids.add(first);
  process.kill(first, 'SIGKILL');
  const second = await until('restarted', () => s.record('worker')?.state === 'running' && s.record('worker')!.pid !== first && s.record('worker')!.pid);
  pids.add(second);
  expect(isOurProcess(second, child.marker)).toBe(true);
  expect(s.record('worker')).toMatchObject({ restarts: 1, crashes: 1, lastExit: { code: null, signal: 'SIGKILL' } });
  await s.stop();
  expect(isOurProcess(second, child.marker)).toBe(false);
  expect(s.record('worker')!.state).toBe('stopped');
});

test('a process that keeps crashing is flagged as a crash loop, reason from its log, and still restarted', async () => {
  const s = supervisor();
  s.add(spec('crasher', 'console.error("cannot open the thing"); process.exit(3)'));
  s.run();
  await until('crash loop', () => isCrashLooping(s.record('crasher'), FAST));
  const r = s.record('crasher')!;
  expect(r.lastExit).toMatchObject({ code: 3, signal: null });
  expect(r.reason).toContain('cannot open the thing');
  expect(r.state).toMatch(/backoff|starting/);
  const restarts = r.restarts!;
  await until('another restart', () => (s.record('crasher')!.restarts ?? 0) > restarts);
  await s.stop();
});

test('a refusal (its refusedExit code) is not restarted: left refused with its own words', async () => {
  const s = supervisor();
  s.add(spec('refuser', 'console.error("refusing to poll q: install govc"); process.exit(78)', { refusedExit: 78 }));
  s.run();
  await until('refused', () => s.record('refuser')?.state === 'refused');
  await sleep(500);
  expect(s.record('refuser')).toMatchObject({ state: 'refused', lastExit: { code: 78 } });
  expect(s.record('refuser')!.restarts ?? 0).toBe(0);
  expect(s.record('refuser')!.reason).toMatch(/install govc/);
  // A fresh supervisor leaves it alone, unless told to retry.
  const again = supervisor(s.records());
  again.add(spec('refuser', 'process.exit(78)', { refusedExit: 78 }));
  expect(again.record('refuser')!.state).toBe('refused');
  await s.stop();
  await again.stop();
});

test('a second supervisor adopts a running process, and restarts it when it dies; a dead "running" record is restarted', async () => {
  const child = spec('adoptee', LIVES);
  const gone = spec('gone', LIVES);
  const first = supervisor();
  first.add(child);
  first.add(gone);
  first.run();
  const pid = await until('running', () => first.record('adoptee')?.state === 'running' && first.record('adoptee')!.pid);
  const gonePid = await until('running', () => first.record('gone')?.state === 'running' && first.record('gone')!.pid);
  pids.add(pid).add(gonePid);
  first.detach(); // the supervisor goes away; its processes stay
  await sleep(100);
  expect(isOurProcess(pid, child.marker)).toBe(true);
  process.kill(gonePid, 'SIGKILL'); // …and one of them dies while nobody watches
  await until('gone', () => !isOurProcess(gonePid, gone.marker));

  const second = supervisor(first.records());
  second.add(child);
  second.add(gone);
  second.run();
  expect(second.record('adoptee')!.pid).toBe(pid);
  const restarted = await until('restarted', () => second.record('gone')?.state === 'running' && second.record('gone')!.pid);
  pids.add(restarted);
  expect(restarted).not.toBe(gonePid);
  expect(second.record('gone')!.lastExit).toMatchObject({ code: null, signal: null });
  // The adopted one is not its child: it is watched by polling, and restarted once it dies.
  process.kill(pid, 'SIGKILL');
  const replacement = await until('replaced', () => second.record('adoptee')?.state === 'running' && second.record('adoptee')!.pid !== pid && second.record('adoptee')!.pid);
  pids.add(replacement);
  expect(second.record('adoptee')!.restarts).toBe(1);
  await second.stop();
  expect(isOurProcess(replacement, child.marker)).toBe(false);
});

test('a gated process waits until its gate opens; stop goes in stopOrder; records reach onChange', async () => {
  let open = false;
  const order: string[] = [];
  const seen: Record<string, ProcessRecord>[] = [];
  const log = path.join(dir, 'order.log');
  const s = supervisor(undefined, { onChange: (r) => seen.push(r) });
  // Each writes its name to a file when SIGTERM arrives, then exits.
  const up = path.join(dir, 'up.log');
  const onTerm = (name: string) =>
    `process.on("SIGTERM", () => { require("fs").appendFileSync(${JSON.stringify(log)}, "${name}\\n"); process.exit(0) }); require("fs").appendFileSync(${JSON.stringify(up)}, "${name}\\n"); ${LIVES}`;
  const isUp = (name: string) => {
    try {
      return readFileSync(up, 'utf8').split('\n').includes(name);
    } catch {
      return false;
    }
  };
  s.add(spec('server', onTerm('server'), { stopOrder: 2 }));
  s.add(spec('worker', onTerm('worker'), { gate: () => open, stopOrder: 0 }));
  s.run();
  await until('server running', () => s.record('server')?.state === 'running');
  await sleep(200);
  expect(s.record('worker')).toMatchObject({ state: 'waiting' });
  expect(s.record('worker')!.pid).toBeUndefined();
  open = true;
  await until('worker running', () => s.record('worker')?.state === 'running');
  pids.add(s.record('server')!.pid!).add(s.record('worker')!.pid!);
  await until('both handle SIGTERM', () => isUp('server') && isUp('worker'));
  await s.stop();
  order.push(...readFileSync(log, 'utf8').trim().split('\n'));
  expect(order).toEqual(['worker', 'server']);
  expect(seen.at(-1)).toMatchObject({ server: { state: 'stopped' }, worker: { state: 'stopped' } });
});
