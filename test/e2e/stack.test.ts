/**
 * The embedded stack end to end, through the real CLI: the real Temporal dev server with SQLite,
 * real worker processes per pool, the doctor workflow, persistence across restarts, and a second
 * stack running beside the test run's own server.
 */
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { type Worker } from '@temporalio/worker';
import { ROOT, cliEnv, kubedos, pidAlive, pinnedStackPorts, startLongRunning, temporalWorkflowIds } from '../support/cli';
import { connectTestEnv, testAddress, type TestEnv } from '../support/temporal';
import { createPoolWorker } from '../../workers/run-pool';

jest.setTimeout(300_000);

const homes: string[] = [];
function newHome(): string {
  const home = mkdtempSync(path.join(os.tmpdir(), 'kubedos-home-'));
  homes.push(home);
  return home;
}

afterAll(async () => {
  // Never leave a stack behind, whatever failed.
  for (const home of homes) {
    await kubedos(['stack', 'stop'], cliEnv({ KUBEDOS_HOME: home })).catch(() => undefined);
    rmSync(home, { recursive: true, force: true });
  }
});

interface StackJson {
  address: string;
  uiUrl: string;
  serverPid: number;
  serverRunning: boolean;
  temporalVersion: string;
  pools: Array<{ pool: string; pid: number; running: boolean; reason?: string }>;
}

test('stack start → doctor → stop → start again keeps the finished run (SQLite)', async () => {
  const env = cliEnv({ KUBEDOS_HOME: newHome() });

  const started = await kubedos(['stack', 'start', '--json'], env);
  expect(started.code).toBe(0);
  const stack = JSON.parse(started.stdout) as StackJson;
  expect(stack.serverRunning).toBe(true);
  expect(stack.temporalVersion).toMatch(/^1\.9\.1 \(Server /);
  // Beside the test run's own server: a different port, chosen because the default was not forced.
  expect(stack.address).not.toBe(testAddress());
  for (const pool of ['control', 'build', 'kvm', 'cloud']) {
    expect(stack.pools.find((p) => p.pool === pool)).toMatchObject({ running: true });
  }

  // The Web UI of the real server answers.
  const ui = await fetch(stack.uiUrl);
  expect(ui.status).toBe(200);

  const doctor = await kubedos(['doctor', '--json'], env);
  expect(doctor.stderr).toMatch(/workflow kubedos-doctor-\S+ started: http:\/\/127\.0\.0\.1:\d+\/namespaces\/default\/workflows\//);
  expect(doctor.code).toBe(0);
  const report = JSON.parse(doctor.stdout) as { workflowId: string; pools: Array<{ pool: string; state: string; probe?: { tools: Array<{ name: string; version?: string }> } }> };
  const build = report.pools.find((p) => p.pool === 'build')!;
  expect(build.state).toBe('ok');
  expect(build.probe!.tools.find((t) => t.name === 'qemu-img')!.version).toMatch(/^\d+\.\d+/);
  expect(temporalWorkflowIds(stack.address)).toContain(report.workflowId);
  // …and the Web UI shows it (its own API, the one the pages call).
  const viaUi = (await (await fetch(`${stack.uiUrl}/api/v1/namespaces/default/workflows/${report.workflowId}`)).json()) as {
    workflowExecutionInfo: { status: string; type: { name: string } };
  };
  expect(viaUi.workflowExecutionInfo).toMatchObject({ status: 'WORKFLOW_EXECUTION_STATUS_COMPLETED', type: { name: 'doctor' } });

  // Human rendering of the same run.
  const table = await kubedos(['doctor'], env);
  expect(table.stdout).toMatch(/POOL\s+QUEUE\s+STATE/);
  expect(table.stdout).toMatch(/build\s+kubedos-build\s+ok/);

  const stopped = await kubedos(['stack', 'stop', '--json'], env);
  expect(stopped.code).toBe(0);
  expect(pidAlive(stack.serverPid)).toBe(false);
  for (const p of stack.pools) expect(pidAlive(p.pid)).toBe(false);
  expect((await kubedos(['stack', 'status'], env)).code).toBe(4);

  const again = JSON.parse((await kubedos(['stack', 'start', '--json'], env)).stdout) as StackJson;
  expect(again.address).toBe(stack.address); // a home keeps its ports
  expect(temporalWorkflowIds(again.address)).toContain(report.workflowId);
  expect((await kubedos(['stack', 'stop'], env)).code).toBe(0);
});

test('kubedos dev in the foreground: crash (SIGKILL) and restart keeps the runs; Ctrl-C stops everything', async () => {
  const home = newHome();
  const env = cliEnv({ KUBEDOS_HOME: home, KUBEDOS_POOLS: 'control,build', ...(await pinnedStackPorts()) });
  const first = await startLongRunning(['dev'], env, /Press Ctrl-C/);
  expect(first.output()).toMatch(/Temporal Web UI: http:\/\/127\.0\.0\.1:\d+/);

  const doctor = await kubedos(['doctor', '--json', '--pools', 'control,build', '--require', 'control,build'], env);
  expect(doctor.code).toBe(0);
  const { workflowId } = JSON.parse(doctor.stdout) as { workflowId: string };

  // Crash: kill -9 the dev process and its server, as a power cut would.
  const state = JSON.parse(readFileSync(path.join(home, 'stack.json'), 'utf8')) as { port: number; server: { pid: number }; workers: Record<string, { pid: number }> };
  first.child.kill('SIGKILL');
  process.kill(state.server.pid, 'SIGKILL');
  await new Promise((r) => setTimeout(r, 500));

  const second = await startLongRunning(['dev'], env, /Press Ctrl-C/);
  expect(temporalWorkflowIds(`127.0.0.1:${state.port}`)).toContain(workflowId);

  const exited = new Promise<number | null>((resolve) => second.child.on('exit', resolve));
  second.child.kill('SIGINT');
  expect(await exited).toBe(0);
  const after = JSON.parse(readFileSync(path.join(home, 'stack.json'), 'utf8')) as { server?: unknown };
  expect(after.server).toBeUndefined();
  for (const w of Object.values(state.workers)) expect(pidAlive(w.pid)).toBe(false);
});

test('a worker refuses to poll a queue it cannot serve, and says what is missing', () => {
  const entry = path.join(ROOT, 'dist', 'workers', 'vsphere.js');
  expect(existsSync(entry)).toBe(true);
  const r = spawnSync(process.execPath, [entry], {
    env: { ...process.env, PATH: '/usr/bin:/bin', TEMPORAL_ADDRESS: testAddress() },
    encoding: 'utf8',
    timeout: 30_000,
  });
  expect(r.status).toBe(78);
  expect(r.stderr).toMatch(/refusing to poll kubedos-vsphere: install govc/);
});

describe('with TEMPORAL_ADDRESS set', () => {
  let env: TestEnv;
  let worker: Worker;
  let running: Promise<void>;
  beforeAll(async () => {
    env = await connectTestEnv();
    // The only test that uses the default control queue on the shared server.
    worker = await createPoolWorker('control', env.nativeConnection, 'default', {}, {
      workflowBundle: { codePath: process.env.KUBEDOS_TEST_WORKFLOW_BUNDLE! },
    });
    running = worker.run();
  });
  afterAll(async () => {
    worker?.shutdown();
    await running;
    await env?.close();
  });

  test('the CLI uses the existing cluster and starts no embedded stack', async () => {
    const home = newHome();
    const r = await kubedos(['doctor', '--json', '--pools', 'control,vsphere', '--require', 'control', '--pickup-timeout', '2s'], cliEnv({ KUBEDOS_HOME: home, TEMPORAL_ADDRESS: testAddress() }));
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as { address: string; pools: Array<{ pool: string; state: string }> };
    expect(report.address).toBe(testAddress());
    expect(report.pools).toEqual(expect.arrayContaining([
      expect.objectContaining({ pool: 'control', state: 'ok' }),
      expect.objectContaining({ pool: 'vsphere', state: 'unreachable' }),
    ]));
    expect(existsSync(path.join(home, 'stack.json'))).toBe(false);
  });

  test('a required pool that is unreachable makes doctor exit 5', async () => {
    const r = await kubedos(['doctor', '--pools', 'control,cloud', '--require', 'control,cloud', '--pickup-timeout', '1s'], cliEnv({ KUBEDOS_HOME: newHome(), TEMPORAL_ADDRESS: testAddress() }));
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(/required pool not ready: cloud/);
  });

  test('a malformed TEMPORAL_ADDRESS is a usage error naming the variable', async () => {
    const r = await kubedos(['doctor'], cliEnv({ KUBEDOS_HOME: newHome(), TEMPORAL_ADDRESS: 'not an address' }));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/TEMPORAL_ADDRESS: "not an address" is not host:port/);
  });
});
