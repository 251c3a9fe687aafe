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
import { Client, Connection } from '@temporalio/client';
import { codecDataConverter, loadCodecKeyring } from '../../src/temporal/codec';

/** A client of an embedded stack, with the payload keys of its home. */
async function connectTo(address: string, home: string): Promise<{ client: Client; close: () => Promise<void> }> {
  const connection = await Connection.connect({ address });
  const client = new Client({ connection, dataConverter: codecDataConverter(loadCodecKeyring({ home })) });
  return { client, close: () => connection.close() };
}
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

/** stack.json as the supervisor writes it. */
interface Supervised {
  pid: number;
  state: string;
  restarts?: number;
  crashes?: number;
  lastExit?: { code: number | null; signal: string | null };
  reason?: string;
}
interface StackFile {
  port: number;
  codecPort: number;
  supervisor?: { pid: number; mode: string };
  server: Supervised;
  codec: Supervised;
  workers: Record<string, Supervised>;
}

async function until<T>(what: string, fn: () => T | undefined | false, timeoutMs = 90_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('the stack heals itself: worker, codec endpoint, dev server and supervisor SIGKILLed; a refusal and a crash loop reported; fleets warn of a pool nobody serves', async () => {
  const home = newHome();
  // kvm refuses its queue: a malformed store setting (exit 78, the same path as a missing tool).
  const env = cliEnv({ KUBEDOS_HOME: home, KUBEDOS_POOLS: 'control,kvm', KUBEDOS_HEADLESS: '1', KUBEDOS_S3_BUCKET: 'kubedos-heal', KUBEDOS_S3_PATH_STYLE: 'maybe', ...(await pinnedStackPorts()) });
  const read = () => JSON.parse(readFileSync(path.join(home, 'stack.json'), 'utf8')) as StackFile;
  const started = await kubedos(['stack', 'start', '--json'], env);
  expect(started.code).toBe(0);
  const first = read();
  expect(first.supervisor).toMatchObject({ mode: 'daemon' });
  expect(pidAlive(first.supervisor!.pid)).toBe(true);
  expect(first.workers.control!.state).toBe('running');

  // A refusal is reported, not restarted in a loop.
  expect(first.workers.kvm).toMatchObject({ state: 'refused', lastExit: { code: 78 } });
  expect(first.workers.kvm!.reason).toMatch(/refusing to poll kubedos-kvm/);
  await new Promise((r) => setTimeout(r, 2_000));
  expect(read().workers.kvm).toMatchObject({ state: 'refused', pid: first.workers.kvm!.pid });
  expect(read().workers.kvm!.restarts ?? 0).toBe(0);

  // A worker: restarted by the supervisor, no command needed.
  process.kill(first.workers.control!.pid, 'SIGKILL');
  const control = await until('control restarted', () => read().workers.control!.pid !== first.workers.control!.pid && read().workers.control!.state === 'running' && read().workers.control!);
  expect(control).toMatchObject({ restarts: 1, lastExit: { signal: 'SIGKILL' } });
  expect(readFileSync(path.join(home, 'logs', 'supervisor.log'), 'utf8')).toMatch(/worker pool control ended \(signal SIGKILL\); restarting in 0\.5 s/);

  // The codec endpoint: back on the same port (the UI points at it), answering. The one killed is
  // the one on record now: under load its first start can lose its port to another process and be
  // restarted already (seen once as ESRCH here); that restart is printed, not hidden.
  const codecBefore = await until('codec running', () => pidAlive(read().codec.pid) && read().codec);
  if ((codecBefore.restarts ?? 0) > 0) console.log(`the codec endpoint was restarted ${codecBefore.restarts} time(s) before the kill:\n${readFileSync(path.join(home, 'logs', 'codec-server.log'), 'utf8').slice(-2000)}`);
  process.kill(codecBefore.pid, 'SIGKILL');
  await until('codec restarted', () => read().codec.pid !== codecBefore.pid && pidAlive(read().codec.pid));
  expect(read().codecPort).toBe(first.codecPort);
  let body: unknown;
  for (const deadline = Date.now() + 30_000; body === undefined; ) {
    body = await fetch(`http://127.0.0.1:${first.codecPort}/decode`, { method: 'POST', body: '{}' }).then((r) => r.json(), () => undefined);
    if (body === undefined && Date.now() > deadline) throw new Error('the restarted codec endpoint does not answer');
    if (body === undefined) await new Promise((r) => setTimeout(r, 200));
  }
  expect(body).toEqual({ payloads: [] });

  // The dev server: same port, same database; the worker is not restarted, it reconnects.
  process.kill(first.server.pid, 'SIGKILL');
  await until('server restarted', () => read().server.pid !== first.server.pid && read().server.state === 'running', 120_000);
  expect(read().port).toBe(first.port);
  expect(read().workers.control!.pid).toBe(control.pid);

  // A running fleet that needs the refused pool: `status` and `stack status` say so, naming the pool and its log.
  const { client, close } = await connectTo(`127.0.0.1:${first.port}`, home);
  try {
    await client.workflow.start('fleet', {
      taskQueue: 'kubedos-control',
      workflowId: 'fleet/heal/herd',
      args: [{
        platform: 'heal', fleet: 'herd', target: { name: 'sim', spec: { type: 'hollow', bootDelay: 0, unhealthyImages: [] } }, deployQueue: 'kubedos-kvm', poolWaitMs: 600_000,
        hostnamePrefix: 'heal', authorizedKeys: [], healthCheck: { type: 'readiness', timeout: 20_000, interval: 100, retries: 0 },
        rollout: { maxSurge: 1, maxUnavailable: 0, failureThreshold: 1, batchSize: 4 }, image: { name: 'worker', digest: 'a'.repeat(64) }, replicas: 1,
      }],
    });
    const kvmLog = path.join(home, 'logs', 'worker-kvm.log');
    const warned = await kubedos(['status'], env);
    expect(warned.code).toBe(0);
    expect(warned.stderr).toContain(`warning: pool kvm has no worker polling kubedos-kvm, and fleet heal/herd needs it: its worker refused the queue`);
    expect(warned.stderr).toContain(`log: ${kvmLog}`);
    expect(warned.stderr).not.toMatch(/pool control has no worker/);
    // (The fleet's workflow answered its status query: the worker reconnected to the restarted server.)
    expect(warned.stdout).toMatch(/fleet heal\/herd on sim/);
    const stackText = await kubedos(['stack', 'status'], env);
    expect(stackText.stdout).toContain('warning: pool kvm has no worker polling kubedos-kvm, and fleet heal/herd needs it');
    expect(stackText.stdout).toMatch(/kvm\s+refused\s+\d+\s+0\s+exit code 78 .*refusing to poll kubedos-kvm/);

    // The supervisor itself SIGKILLed, then a worker: nothing restarts it until the next command, and `stack status` says so.
    const sup = read().supervisor!.pid;
    process.kill(sup, 'SIGKILL');
    await until('supervisor gone', () => !pidAlive(sup));
    const orphan = read().workers.control!.pid;
    process.kill(orphan, 'SIGKILL');
    await until('worker gone', () => !pidAlive(orphan));
    const unsupervised = await kubedos(['stack', 'status'], env);
    expect(unsupervised.stdout).toMatch(/supervisor\s+not running/);
    expect(unsupervised.stdout).toContain('warning: nothing supervises the embedded stack');
    expect(unsupervised.stdout).toMatch(/control\s+exited/);
    expect(unsupervised.stdout).toMatch(/pool control has no worker polling kubedos-control, and fleet heal\/herd needs it: its worker is gone .* no supervisor has restarted it yet; log: \S+worker-control\.log/);
    // The next command starts a supervisor, which adopts what runs and restarts what does not.
    expect((await kubedos(['status'], env)).code).toBe(0);
    const adopted = read();
    expect(adopted.supervisor!.pid).not.toBe(sup);
    expect(adopted.server.pid).toBe(read().server.pid);
    await until('control restarted by the new supervisor', () => read().workers.control!.pid !== orphan && read().workers.control!.state === 'running');
    expect(read().workers.control!.lastExit).toMatchObject({ code: null, signal: null }); // it ended unwatched
    await client.workflow.getHandle('fleet/heal/herd').terminate('test over');
  } finally {
    await close();
  }

  // A crash loop: killed again as soon as it is back, five times; reported in status and on every command.
  for (let i = 0; i < 5; i++) {
    const pid = read().workers.control!.pid;
    process.kill(pid, 'SIGKILL');
    await until('restarted', () => read().workers.control!.pid !== pid && pidAlive(read().workers.control!.pid), 60_000);
  }
  expect(read().workers.control!.crashes).toBeGreaterThanOrEqual(5);
  const looping = await kubedos(['stack', 'status'], env);
  expect(looping.stdout).toMatch(/control\s+crash-loop/);
  expect(looping.stdout).toMatch(/warning: worker pool control is crash-looping \(\d+ restarts; last: signal SIGKILL/);
  const command = await kubedos(['status', '--json'], env);
  expect(command.stderr).toMatch(/worker pool control is crash-looping/);

  // An explicit `stack start` tries the refused pool again (still refused: the setting is still wrong).
  const kvmBefore = read().workers.kvm!.pid;
  expect((await kubedos(['stack', 'start'], env)).code).toBe(0);
  expect(read().workers.kvm).toMatchObject({ state: 'refused' });
  expect(read().workers.kvm!.pid).not.toBe(kvmBefore);

  const all = read();
  expect((await kubedos(['stack', 'stop'], env)).code).toBe(0);
  for (const pid of [all.supervisor!.pid, all.server.pid, all.codec.pid, all.workers.control!.pid]) expect(pidAlive(pid)).toBe(false);
});

test('a worker refuses to poll a queue it cannot serve, and says what is missing', () => {
  // The kvm pool with nothing on PATH (the vsphere pool needs govc only where the vsphere target is registered).
  const entry = path.join(ROOT, 'dist', 'workers', 'kvm.js');
  expect(existsSync(entry)).toBe(true);
  const r = spawnSync(process.execPath, [entry], {
    env: { ...process.env, PATH: '/nonexistent', KUBEDOS_HOME: newHome(), TEMPORAL_ADDRESS: testAddress() },
    encoding: 'utf8',
    timeout: 30_000,
  });
  expect(r.status).toBe(78);
  expect(r.stderr).toMatch(/refusing to poll kubedos-kvm: (install [^;]+; )*install qemu-system-x86_64 \(not on PATH\)/);
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
