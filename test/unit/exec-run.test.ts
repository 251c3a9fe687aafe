/** The one tool runner: argv without a shell, clean environment, typed failures, group kill. */
import { readFileSync } from 'node:fs';
import { runTool, which } from '../../src/exec/run';
import { CancelledError, ToolFailedError, ToolMissingError } from '../../src/errors';

const alive = (pid: number) => {
  try {
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};

test('argv reaches the program verbatim: no shell ever interprets it', async () => {
  const hostile = ['a; touch /tmp/kubedos-pwned', '$(id)', '`id`', "it's", 'line\nbreak', '*'];
  const { stdout } = await runTool(['printf', '%s|', ...hostile]);
  expect(stdout).toBe(hostile.map((h) => `${h}|`).join(''));
});

test('the environment is clean and fixed (UTC, C.UTF-8, SOURCE_DATE_EPOCH only when asked)', async () => {
  process.env.KUBEDOS_SECRET_TEST = 'leak';
  const { stdout } = await runTool(['env'], { sourceDateEpoch: 1700000000 });
  const vars = Object.fromEntries(stdout.trim().split('\n').map((l) => l.split(/=(.*)/s).slice(0, 2)));
  expect(Object.keys(vars).sort()).toEqual(['HOME', 'LANG', 'LC_ALL', 'PATH', 'SOURCE_DATE_EPOCH', 'TZ']);
  expect(vars).toMatchObject({ TZ: 'UTC', LC_ALL: 'C.UTF-8', SOURCE_DATE_EPOCH: '1700000000' });
  delete process.env.KUBEDOS_SECRET_TEST;
});

test('stdin is closed unless input is given', async () => {
  expect((await runTool(['cat'])).stdout).toBe('');
  expect((await runTool(['cat'], { input: 'abc' })).stdout).toBe('abc');
});

test('a failing tool becomes ToolFailedError with argv, exit code and the tail of stderr', async () => {
  const err = await runTool(['sh', '-c', 'echo first >&2; echo "the real reason" >&2; exit 3']).catch((e) => e);
  expect(err).toBeInstanceOf(ToolFailedError);
  expect(err).toMatchObject({ tool: 'sh', exitCode: 3, argv: ['sh', '-c', expect.any(String)] });
  expect(err.stderrTail).toMatch(/the real reason$/);
});

test('a missing tool becomes ToolMissingError with a hint', async () => {
  const err = await runTool(['kubedos-no-such-tool']).catch((e) => e);
  expect(err).toBeInstanceOf(ToolMissingError);
  expect(err.hint).toMatch(/setup/);
  expect(await which('kubedos-no-such-tool')).toBeUndefined();
  expect(await which('sh')).toMatch(/\/sh$/);
});

test('cancellation kills the whole process tree, grandchildren included', async () => {
  const controller = new AbortController();
  let pids: number[] = [];
  const running = runTool(['sh', '-c', 'sleep 300 & echo $!; sleep 300 & echo $!; wait'], {
    signal: controller.signal,
    killGraceMs: 1000,
    onOutput: (stream, chunk) => {
      if (stream === 'stdout') pids.push(...chunk.trim().split('\n').filter(Boolean).map(Number));
      if (pids.length >= 2) controller.abort();
    },
  });
  await expect(running).rejects.toBeInstanceOf(CancelledError);
  pids = pids.slice(0, 2);
  expect(pids).toHaveLength(2);
  await new Promise((r) => setTimeout(r, 300));
  for (const pid of pids) expect(alive(pid)).toBe(false);
});

test('a timeout ends the tool and its descendants at once, though they hold its output open', async () => {
  let grandchild = 0;
  const started = Date.now();
  const err = await runTool(['sh', '-c', 'sleep 300 & echo $!; wait'], {
    timeoutMs: 500,
    onOutput: (stream, chunk) => {
      if (stream === 'stdout') grandchild = Number(chunk.trim());
    },
  }).catch((e) => e);
  expect(err).toBeInstanceOf(ToolFailedError);
  expect(err.signal).toBe('timeout');
  // Not after the grandchild's 300 s: the whole group is signalled when the deadline passes.
  expect(Date.now() - started).toBeLessThan(20_000);
  await new Promise((r) => setTimeout(r, 300));
  expect(grandchild).toBeGreaterThan(0);
  expect(alive(grandchild)).toBe(false);
});
