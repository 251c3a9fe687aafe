/**
 * deployPlatform, the workflow behind `kubedos deploy`, against the real dev server on hollow
 * nodes: a missing fleet is started (and outlives the run), a running one is handed the new image
 * with the spec's settings and replica count, a request the fleet cannot take is refused with its
 * reason, and an unchanged image says so.
 */
import { randomUUID } from 'node:crypto';
import type { RollOutInput, RollOutResult } from '../../workflows/deploy-platform';
import { fleetWorkflowId, teardownSignal } from '../../workflows/fleet-api';
import { DIGEST_A, DIGEST_B, hollowHarness, readyCount, waitForStatus, type HollowHarness } from '../support/fleet';
import { connectTestEnv, type TestEnv } from '../support/temporal';

let env: TestEnv;
let h: HollowHarness;
let running: Promise<void>;
const id = randomUUID().slice(0, 8);

beforeAll(async () => {
  env = await connectTestEnv();
  h = await hollowHarness(env, id);
  running = h.worker.run();
});

afterAll(async () => {
  const driver = h?.driver();
  for (const node of (await driver?.list({})) ?? []) await driver!.destroy(node.nodeId);
  h?.worker.shutdown();
  await running;
  await env?.close();
});

test('starts a missing fleet, rolls a running one with the spec\'s settings, refuses what a fleet cannot take', async () => {
  const p = `d${id}`;
  const { image: _image, ...spec } = h.input(p, { replicas: 2 });
  const deploy = async (n: number, digest: string, fleetSpec = spec): Promise<{ result: RollOutResult; ms: number }> => {
    const started = Date.now();
    const input: Omit<RollOutInput, 'startMissing'> = { platform: p, images: [{ image: 'worker', digest, fleets: [{ fleet: 'workers', spec: fleetSpec }] }] };
    const result = (await env.client.workflow.execute('deployPlatform', { taskQueue: h.queue, workflowId: `deploy/${p}/${n}`, args: [input] })) as RollOutResult;
    return { result, ms: Date.now() - started };
  };

  const first = await deploy(1, DIGEST_A);
  expect(first.result.fleets).toEqual([{ fleet: 'workers', image: 'worker', digest: DIGEST_A, outcome: 'completed', started: true }]);
  const fleet = env.client.workflow.getHandle(fleetWorkflowId(p, 'workers'));
  // The fleet outlives the run that started it.
  expect((await fleet.describe()).status.name).toBe('RUNNING');
  expect(readyCount(await waitForStatus(fleet, (s) => s.phase === 'steady'))).toBe(2);

  const second = await deploy(2, DIGEST_B, { ...spec, hostnamePrefix: 'node', replicas: 3 });
  expect(second.result.fleets).toEqual([{ fleet: 'workers', image: 'worker', digest: DIGEST_B, outcome: 'completed' }]);
  const rolled = await waitForStatus(fleet, (s) => s.phase === 'steady' && readyCount(s) === 3);
  expect(rolled.generation).toBe(2);
  expect(rolled.nodes.every((n) => n.hostname.startsWith('node-'))).toBe(true);
  // Handing a running fleet its image is a signal and a wait, not a rebuild of the world.
  expect(second.ms).toBeLessThan(30_000);

  const same = await deploy(3, DIGEST_B, { ...spec, hostnamePrefix: 'node', replicas: 3 });
  expect(same.result.fleets[0]).toMatchObject({ outcome: 'unchanged' });
  expect(same.ms).toBeLessThan(5_000);

  const moved = await deploy(4, DIGEST_A, { ...spec, target: { ...spec.target, name: 'elsewhere' } });
  expect(moved.result.fleets[0]).toMatchObject({ outcome: 'refused', error: expect.stringMatching(/a running fleet keeps its platform, name and target/) });
  expect((await waitForStatus(fleet, (s) => s.phase === 'steady')).generation).toBe(2);

  await fleet.signal(teardownSignal);
  await fleet.result();
});
