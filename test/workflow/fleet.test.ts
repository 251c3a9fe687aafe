/**
 * The fleet controller on hollow nodes (real processes) against the real dev server: deploy,
 * scale, roll forward, roll back automatically, abort, pause, teardown.
 */
import { randomUUID } from 'node:crypto';
import { WorkflowUpdateFailedError } from '@temporalio/client';
import { abortSignal, deployUpdate, pauseSignal, resumeSignal, scaleUpdate, teardownSignal } from '../../workflows/fleet-api';
import { DIGEST_A, DIGEST_B, DIGEST_C, hollowHarness, readyCount, startFleet, waitForStatus, type HollowHarness } from '../support/fleet';
import { connectTestEnv, testPoolWorker, type TestEnv } from '../support/temporal';
import { createDeployActivities } from '../../activities/deploy';

let env: TestEnv;
let h: HollowHarness;
let run: Promise<void>;
beforeAll(async () => {
  env = await connectTestEnv();
  h = await hollowHarness(env, randomUUID().slice(0, 8));
  run = h.worker.run();
});
afterAll(async () => {
  h?.worker.shutdown();
  await run;
  // A failed test must not leave node processes behind: sweep whatever is still there.
  const driver = h?.driver();
  for (const node of (await driver?.list({})) ?? []) await driver!.destroy(node.nodeId);
  await env?.close();
});

const platform = () => `p${randomUUID().slice(0, 8)}`;

test('a fleet of 3 comes up healthy, each node with its own identity, and teardown leaves no process', async () => {
  const p = platform();
  const handle = await startFleet(env, h, h.input(p));
  const status = await waitForStatus(handle, (s) => s.phase === 'steady' && readyCount(s) === 3);
  expect(status.generation).toBe(1);
  const ids = status.nodes.map((n) => n.identity!);
  expect(new Set(ids.map((i) => i.machineId)).size).toBe(3);
  expect(new Set(ids.map((i) => i.hostKeyFingerprint)).size).toBe(3);
  // What the driver sees on the substrate matches what the workflow recorded.
  const owned = await h.driver().list({ platform: p });
  expect(owned.filter((n) => n.running).map((n) => n.nodeId).sort()).toEqual(status.nodes.map((n) => n.nodeId).sort());
  for (const node of owned) expect(node.identity!.hostKeyFingerprint).toBe(status.nodes.find((n) => n.nodeId === node.nodeId)!.identity!.hostKeyFingerprint);

  await handle.signal(teardownSignal);
  const result = await handle.result();
  expect(result).toEqual({ fleet: 'workers', destroyed: 3 });
  expect(await h.driver().list({ platform: p })).toEqual([]);
});

test('scale 3 → 5 → 2, and an absurd count is rejected before it enters history', async () => {
  const p = platform();
  const handle = await startFleet(env, h, h.input(p));
  await waitForStatus(handle, (s) => s.phase === 'steady' && readyCount(s) === 3);
  expect(await handle.executeUpdate(scaleUpdate, { args: [5] })).toBe(5);
  await waitForStatus(handle, (s) => s.phase === 'steady' && readyCount(s) === 5);
  await handle.executeUpdate(scaleUpdate, { args: [2] });
  const two = await waitForStatus(handle, (s) => s.phase === 'steady' && s.nodes.length === 2);
  // The oldest nodes stay.
  expect(two.nodes.map((n) => n.nodeId)).toEqual([`${p}-workers-0000`, `${p}-workers-0001`]);
  expect((await h.driver().list({ platform: p })).filter((n) => n.running)).toHaveLength(2);

  for (const bad of [-1, 1.5, 1e9]) {
    await expect(handle.executeUpdate(scaleUpdate, { args: [bad] })).rejects.toThrow(WorkflowUpdateFailedError);
  }
  const history = await handle.fetchHistory();
  const accepted = history.events!.filter((e) => e.workflowExecutionUpdateAcceptedEventAttributes);
  expect(accepted).toHaveLength(2); // only 5 and 2
  await handle.signal(teardownSignal);
  await handle.result();
});

test('a new image rolls forward; an unhealthy one rolls back automatically with N untouched', async () => {
  const p = platform();
  const spec = { unhealthyImages: ['broken'] };
  const handle = await startFleet(env, h, h.input(p, { target: h.target(spec), healthCheck: { type: 'readiness', timeout: 4_000, interval: 100, retries: 1 } }));
  const g1 = await waitForStatus(handle, (s) => s.phase === 'steady' && readyCount(s) === 3);

  // N → N+1 healthy: every node replaced, generation 2.
  expect(await handle.executeUpdate(deployUpdate, { args: [{ image: { name: 'worker', digest: DIGEST_B } }] })).toEqual({ generation: 2, unchanged: false });
  const g2 = await waitForStatus(handle, (s) => s.phase === 'steady' && s.generation === 2 && readyCount(s) === 3);
  expect(g2.nodes.every((n) => n.generation === 2)).toBe(true);
  expect(g2.nodes.map((n) => n.nodeId).some((id) => g1.nodes.some((o) => o.nodeId === id))).toBe(false);

  // N+1 unhealthy: rolled back, generation 2 untouched (same nodes, same processes).
  await handle.executeUpdate(deployUpdate, { args: [{ image: { name: 'broken', digest: DIGEST_C } }] });
  const back = await waitForStatus(handle, (s) => s.rollouts.length === 3 && s.phase === 'steady');
  expect(back.rollouts.map((r) => r.outcome)).toEqual(['completed', 'completed', 'rolled-back']);
  expect(back.rollouts[2]).toMatchObject({ from: 2, to: 3 });
  // Each failed node was replaced once (retries: 1) before it counted.
  expect(back.nodes.find((n) => n.state === 'failed')).toMatchObject({ generation: 3, attempts: 2 });
  expect(back.generation).toBe(2);
  expect(back.nodes.filter((n) => n.state === 'ready').map((n) => n.nodeId)).toEqual(g2.nodes.map((n) => n.nodeId));
  expect(back.lastError).toMatch(/rolled back/);
  const running = (await h.driver(spec).list({ platform: p })).filter((n) => n.running);
  expect(running.map((n) => n.nodeId).sort()).toEqual(g2.nodes.map((n) => n.nodeId).sort());
  expect(running.every((n) => n.labels.imageDigest === DIGEST_B)).toBe(true);

  // The failed rollout is its own failed run, with the reason.
  const rolloutRun = env.client.workflow.getHandle(back.rollouts[2]!.workflowId);
  expect((await rolloutRun.describe()).status.name).toBe('FAILED');
  await handle.signal(teardownSignal);
  await handle.result();
});

test('abort mid-rollout rolls back and holds; pause stops a rollout until resume', async () => {
  const p = platform();
  const spec = { bootDelay: 1500 };
  const handle = await startFleet(env, h, h.input(p, { target: h.target(spec), replicas: 4 }));
  const g1 = await waitForStatus(handle, (s) => s.phase === 'steady' && readyCount(s) === 4);

  await handle.executeUpdate(deployUpdate, { args: [{ image: { name: 'worker', digest: DIGEST_B } }] });
  await waitForStatus(handle, (s) => s.phase === 'rolling-out' && s.rolloutWorkflowId !== undefined);
  await handle.signal(abortSignal, { reason: 'operator abort' });
  const aborted = await waitForStatus(handle, (s) => s.rollouts.length === 2 && s.phase === 'paused');
  expect(aborted.rollouts[1]).toMatchObject({ from: 1, to: 2, outcome: 'aborted', error: 'operator abort' });
  expect(aborted.generation).toBe(1);
  expect(readyCount(aborted)).toBe(4);
  const running = (await h.driver(spec).list({ platform: p })).filter((n) => n.running);
  expect(running).toHaveLength(4);
  expect(running.every((n) => n.labels.imageDigest === DIGEST_A)).toBe(true);
  // Nothing of generation 1 was touched when maxUnavailable is 0 and the first new node never got healthy.
  expect(aborted.nodes.filter((n) => n.state === 'ready').map((n) => n.nodeId).sort()).toEqual(g1.nodes.map((n) => n.nodeId).sort());

  // Paused: a new deploy waits; resume lets it run.
  await handle.executeUpdate(deployUpdate, { args: [{ image: { name: 'worker', digest: DIGEST_C } }] });
  await new Promise((r) => setTimeout(r, 1500));
  expect((await handle.query('status') as { generation: number }).generation).toBe(1);
  await handle.signal(resumeSignal);
  await waitForStatus(handle, (s) => s.phase === 'steady' && s.generation === 2 && readyCount(s) === 4, 90_000);
  await handle.signal(pauseSignal);
  await waitForStatus(handle, (s) => s.phase === 'paused');
  await handle.signal(teardownSignal);
  await handle.result();
});

test('steps on another pool\'s queue run as regular activities: deploy and automatic rollback', async () => {
  // Hollow steps on the control queue are local activities; every real target's run on its own
  // pool (kvm, vsphere, cloud) as regular activities. Serve the hollow driver from a kvm-pool
  // worker to exercise that path too.
  const queue = `${h.queue}-kvm`;
  const worker = await testPoolWorker(env, 'kvm', queue, createDeployActivities({ driverFor: (t) => h.driver(t.spec as never) }) as never);
  const running = worker.run();
  try {
    const p = platform();
    const handle = await startFleet(env, h, h.input(p, { deployQueue: queue, replicas: 2, target: h.target({ unhealthyImages: ['broken'] }), healthCheck: { type: 'readiness', timeout: 3_000, interval: 100, retries: 0 } }));
    const g1 = await waitForStatus(handle, (s) => s.phase === 'steady' && readyCount(s) === 2);
    await handle.executeUpdate(deployUpdate, { args: [{ image: { name: 'broken', digest: DIGEST_B } }] });
    const back = await waitForStatus(handle, (s) => s.rollouts.length === 2 && s.phase === 'steady');
    expect(back.rollouts[1]!.outcome).toBe('rolled-back');
    expect(back.nodes.filter((n) => n.state === 'ready').map((n) => n.nodeId)).toEqual(g1.nodes.map((n) => n.nodeId));
    const history = await env.client.workflow.getHandle(`fleet/${p}/workers/node/${g1.nodes[0]!.nodeId}`).fetchHistory();
    const types = history.events!.flatMap((e) => e.activityTaskScheduledEventAttributes?.activityType?.name ?? []);
    expect(types).toEqual(['createNode', 'startNode', 'awaitNodeHealthy']);
    await handle.signal(teardownSignal);
    await handle.result();
  } finally {
    worker.shutdown();
    await running;
  }
});

test('a long-lived fleet continues as new when its history grows, and keeps its nodes and state', async () => {
  const p = platform();
  const handle = await startFleet(env, h, h.input(p, { replicas: 2, historyLimit: 30 }));
  await waitForStatus(handle, (s) => s.phase === 'steady' && readyCount(s) === 2);
  const firstRun = (await handle.describe()).runId;
  for (const n of [3, 1, 2]) {
    await handle.executeUpdate(scaleUpdate, { args: [n] });
    await waitForStatus(handle, (s) => s.phase === 'steady' && s.nodes.length === n);
  }
  const latest = env.client.workflow.getHandle(handle.workflowId);
  expect((await latest.describe()).runId).not.toBe(firstRun);
  const after = await waitForStatus(latest, (s) => s.phase === 'steady' && readyCount(s) === 2);
  expect(after.rollouts).toHaveLength(1);
  // 2 → 3 added 0002; → 1 removed the newest (0002, 0001); → 2 added 0003: ordinals are never reused.
  expect(after.nodes.map((n) => n.nodeId)).toEqual([`${p}-workers-0000`, `${p}-workers-0003`]);
  await latest.signal(teardownSignal);
  expect(await latest.result()).toEqual({ fleet: 'workers', destroyed: 2 });
});

test('a second start of the same fleet is refused, not doubled', async () => {
  const p = platform();
  const handle = await startFleet(env, h, h.input(p, { replicas: 1 }));
  await expect(startFleet(env, h, h.input(p, { replicas: 1 }))).rejects.toThrow(/already started/i);
  await waitForStatus(handle, (s) => s.phase === 'steady' && readyCount(s) === 1);
  await handle.signal(teardownSignal);
  await handle.result();
});
