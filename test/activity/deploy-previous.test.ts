/**
 * The deploy activities hand a driver the previous attempt's last heartbeat as
 * `DriverContext.previous` (what the cloud drivers resume a long operation or an upload from), and
 * the driver's progress reports become the activity's heartbeats. Run in Temporal's
 * MockActivityEnvironment with the heartbeat details a retried attempt would see; and a health
 * check keeps heartbeating while one probe waits.
 */
import { MockActivityEnvironment } from '@temporalio/testing';
import { createDeployActivities, type TargetRef } from '../../activities/deploy';
import type { CreateNodeRequest, DriverContext, ProgressDetail, TargetDriver } from '../../src/targets/driver';
import { publicPart } from '../../src/targets/identity';

const target: TargetRef = { name: 't', spec: { type: 'hollow' } as never };
const labels = { platform: 'p', fleet: 'f', generation: 1, image: 'i', imageDigest: 'e'.repeat(64) };

function recordingDriver(seen: DriverContext[]): TargetDriver {
  return {
    type: 'hollow',
    name: 't',
    prepare: async () => ({ digest: 'd', location: 'l' }),
    create: async (req: CreateNodeRequest, ctx: DriverContext) => {
      seen.push(ctx);
      ctx.progress?.({ step: 'create vm', resume: { operation: '{"op":"next"}' } });
      return publicPart(req.identity);
    },
  } as unknown as TargetDriver;
}

async function createWith(heartbeatDetails: unknown): Promise<{ seen: DriverContext[]; beats: ProgressDetail[] }> {
  const seen: DriverContext[] = [];
  const beats: ProgressDetail[] = [];
  const activities = createDeployActivities({ driverFor: () => recordingDriver(seen) });
  const env = new MockActivityEnvironment({ heartbeatDetails, attempt: 2 });
  env.on('heartbeat', (d: ProgressDetail) => beats.push(d));
  await env.run(activities.createNode, { target, nodeId: 'p-f-0001', hostname: 'f-0001', labels, image: { digest: 'd', location: 'l' }, authorizedKeys: [] } as never);
  return { seen, beats };
}

test('a retried attempt gives the driver the last progress it heartbeated; the driver\'s progress is heartbeated', async () => {
  const previous: ProgressDetail = { step: 'create vm', resume: { operation: '{"azure":"create-vm:p-f-0001","poller":"…"}' } };
  const { seen, beats } = await createWith(previous);
  expect(seen).toHaveLength(1);
  expect(seen[0]!.previous).toEqual(previous);
  expect(beats).toEqual([{ step: 'create vm', resume: { operation: '{"op":"next"}' } }]);
});

test('heartbeat details that are not a driver\'s progress (or none) give no previous', async () => {
  for (const details of [undefined, null, 'x', { done: 1 }, { step: 3 }]) {
    const { seen } = await createWith(details);
    expect(seen[0]!.previous).toBeUndefined();
  }
});

test('a health check heartbeats while a slow probe is in flight, with the last probe\'s detail', async () => {
  let calls = 0;
  const driver = {
    type: 'hollow',
    name: 't',
    // The first probe answers after 11 s (a slow BMC), the second at once.
    readiness: async () => {
      calls++;
      if (calls === 1) await new Promise((r) => setTimeout(r, 11_000));
      return calls > 1;
    },
  } as unknown as TargetDriver;
  const activities = createDeployActivities({ driverFor: () => driver });
  const env = new MockActivityEnvironment();
  const beats: { at: number; detail: unknown }[] = [];
  const t0 = Date.now();
  env.on('heartbeat', (d: unknown) => beats.push({ at: Date.now() - t0, detail: d }));
  const result = await env.run(activities.awaitNodeHealthy, { target, nodeId: 'p-f-0001', healthCheck: { type: 'readiness', timeout: 60_000, interval: 100, retries: 0 } } as never);
  expect(result).toEqual({ detail: 'readiness reported', probes: 2 });
  // During the 11 s probe: heartbeats at ~5 s and ~10 s saying nothing was probed yet.
  const during = beats.filter((b) => b.at < 10_900);
  expect(during.length).toBeGreaterThanOrEqual(2);
  expect(during[0]!.detail).toEqual({ attempt: 0, detail: 'not probed yet' });
  expect(beats.at(-1)!.detail).toEqual({ attempt: 2, detail: 'readiness reported' });
}, 30_000);
