/** Fleets on hollow nodes against the real dev server: a control worker with deploy activities. */
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { WorkflowHandle } from '@temporalio/client';
import type { Worker } from '@temporalio/worker';
import { createDeployActivities, type TargetRef } from '../../activities/deploy';
import { HollowDriver } from '../../src/targets/hollow/driver';
import type { TargetOf } from '../../src/platform/types';
import { fleetStatusQuery, fleetWorkflowId, type FleetInput, type FleetStatus } from '../../workflows/fleet-api';
import { testPoolWorker, type TestEnv } from './temporal';

export const DIGEST_A = 'a'.repeat(64);
export const DIGEST_B = 'b'.repeat(64);
export const DIGEST_C = 'c'.repeat(64);

export interface HollowHarness {
  worker: Worker;
  queue: string;
  stateDir: string;
  driver(spec?: Partial<TargetOf<'hollow'>>): HollowDriver;
  target(spec?: Partial<TargetOf<'hollow'>>): TargetRef;
  input(platform: string, overrides?: Partial<FleetInput>): FleetInput;
}

export function hollowSpec(spec: Partial<TargetOf<'hollow'>> = {}): TargetOf<'hollow'> {
  return { type: 'hollow', bootDelay: 0, unhealthyImages: [], ...spec } as TargetOf<'hollow'>;
}

/** A hollow fleet of 3 'worker' nodes on target 'sim', one node at a time, quick readiness checks. */
export function hollowFleetInput(platform: string, deployQueue: string, overrides: Partial<FleetInput> = {}): FleetInput {
  return {
    platform,
    fleet: 'workers',
    target: { name: 'sim', spec: hollowSpec() },
    deployQueue,
    hostnamePrefix: 'worker',
    authorizedKeys: [],
    healthCheck: { type: 'readiness', timeout: 20_000, interval: 100, retries: 0 },
    rollout: { maxSurge: 1, maxUnavailable: 0, failureThreshold: 1, batchSize: 50 },
    image: { name: 'worker', digest: DIGEST_A },
    replicas: 3,
    ...overrides,
  };
}

export async function hollowHarness(env: TestEnv, id: string): Promise<HollowHarness> {
  const stateDir = mkdtempSync(path.join(os.tmpdir(), 'kubedos-hollow-'));
  const queue = `t-${id}-control`;
  const driverFor = (t: TargetRef) => new HollowDriver(t.name, t.spec as TargetOf<'hollow'>, { stateDir: path.join(stateDir, t.name) });
  const worker = await testPoolWorker(env, 'control', queue, createDeployActivities({ driverFor }) as never);
  const harness: HollowHarness = {
    worker,
    queue,
    stateDir,
    driver: (spec = {}) => driverFor(harness.target(spec)) as HollowDriver,
    target: (spec = {}) => ({ name: 'sim', spec: hollowSpec(spec) }),
    input: (platform, overrides = {}) => hollowFleetInput(platform, queue, { target: harness.target(), ...overrides }),
  };
  return harness;
}

export async function startFleet(env: TestEnv, h: HollowHarness, input: FleetInput): Promise<WorkflowHandle> {
  return env.client.workflow.start('fleet', { taskQueue: h.queue, workflowId: fleetWorkflowId(input.platform, input.fleet), args: [input] });
}

/** Poll the status query until `ok` holds; on timeout, fail with the last status seen. */
export async function waitForStatus(handle: WorkflowHandle, ok: (s: FleetStatus) => boolean, timeoutMs = 60_000): Promise<FleetStatus> {
  const deadline = Date.now() + timeoutMs;
  let last: FleetStatus | undefined;
  while (Date.now() < deadline) {
    last = await handle.query(fleetStatusQuery);
    if (ok(last)) return last;
    await sleep(200);
  }
  let rollout = '';
  if (last?.rolloutWorkflowId) {
    // Say where the rollout is stuck: its own status and the last events of its history.
    const child = handle.client.getHandle(last.rolloutWorkflowId);
    const status = await child.query('rolloutStatus').catch((e: Error) => e.message);
    const events = (await child.fetchHistory()).events!.slice(-6).map((e: unknown) => JSON.stringify(e).slice(0, 600));
    rollout = `\nrollout: ${JSON.stringify(status)}\n${events.join('\n')}`;
  }
  throw new Error(`fleet status never matched; last: ${JSON.stringify({ ...last, nodes: last?.nodes.map((n) => `${n.nodeId}:${n.state}${n.error ? ` (${n.error.slice(0, 200)})` : ''}`) })}${rollout}`);
}

export const readyCount = (s: FleetStatus) => s.nodes.filter((n) => n.state === 'ready').length;
