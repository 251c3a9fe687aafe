/**
 * One fleet test for the cloud targets' e2e files: a fleet of 2 through the real fleet workflow on
 * the dev server, the target's driver run by a cloud worker on its own queue, then teardown; the
 * caller says what its stand-ins must no longer hold.
 */
import { randomUUID } from 'node:crypto';
import type { Worker } from '@temporalio/worker';
import { createDeployActivities, type TargetRef } from '../../activities/deploy';
import type { TargetDriver } from '../../src/targets/driver';
import { fleetWorkflowId, teardownSignal, type FleetInput } from '../../workflows/fleet-api';
import { readyCount, waitForStatus } from './fleet';
import { connectTestEnv, testPoolWorker, type TestEnv } from './temporal';

export interface CloudFleetCase {
  /** The test's name. */
  title: string;
  /** For the timing line: "azure (ARM stand-in, Azurite)". */
  label: string;
  target: Omit<TargetRef, 'spec'> & { spec: () => unknown };
  driver: () => TargetDriver;
  artifact: () => { format: string; path: string; sha256: string; size: number };
  artifactFormat: FleetInput['artifactFormat'];
  digest: string;
  authorizedKeys: string[];
  /** After teardown: what of the fleet's platform the stand-ins still hold (expected none). */
  leftovers: (platform: string) => string[];
}

export function describeCloudFleet(c: CloudFleetCase): void {
  describe('through the fleet workflow (dev server, cloud worker on its own queue)', () => {
    let env: TestEnv;
    const workers: Worker[] = [];
    const running: Promise<void>[] = [];

    beforeAll(async () => {
      env = await connectTestEnv();
    });
    afterAll(async () => {
      for (const w of workers) w.shutdown();
      await Promise.allSettled(running);
      await env?.close();
    });

    test(c.title, async () => {
      const id = randomUUID().slice(0, 8);
      const fleetPlatform = `f${id}`;
      const target: TargetRef = { name: c.target.name, spec: c.target.spec() as never };
      const fleetDriver = c.driver();
      const cloudQueue = `t-${id}-cloud`;
      const controlQueue = `t-${id}-control`;
      const deploy = createDeployActivities({ driverFor: () => fleetDriver, fetchArtifact: async () => c.artifact() as never });
      workers.push(await testPoolWorker(env, 'cloud', cloudQueue, deploy as never), await testPoolWorker(env, 'control', controlQueue));
      running.push(...workers.map((w) => w.run()));
      const input: FleetInput = {
        platform: fleetPlatform,
        fleet: 'workers',
        target,
        deployQueue: cloudQueue,
        artifactFormat: c.artifactFormat,
        hostnamePrefix: 'worker',
        authorizedKeys: c.authorizedKeys,
        healthCheck: { type: 'readiness', timeout: 60_000, interval: 300, retries: 0 },
        rollout: { maxSurge: 1, maxUnavailable: 0, failureThreshold: 1, batchSize: 50 },
        image: { name: 'kubedos-test', digest: c.digest },
        replicas: 2,
      };
      const started = Date.now();
      const handle = await env.client.workflow.start('fleet', { taskQueue: controlQueue, workflowId: fleetWorkflowId(fleetPlatform, 'workers'), args: [input] });
      try {
        const status = await waitForStatus(handle, (s) => s.phase === 'steady' && readyCount(s) === 2, 180_000);
        console.log(`${c.label}, fleet of 2: deploy → ready in ${Date.now() - started} ms`);
        const owned = await fleetDriver.list({ platform: fleetPlatform }, {});
        expect(owned.map((n) => [n.nodeId, n.running, n.identity])).toEqual(status.nodes.map((n) => [n.nodeId, true, n.identity]).sort());
      } finally {
        await handle.signal(teardownSignal).catch(() => undefined);
      }
      expect(await handle.result()).toEqual({ fleet: 'workers', destroyed: 2 });
      expect(await fleetDriver.list({ platform: fleetPlatform }, {})).toEqual([]);
      expect(c.leftovers(fleetPlatform)).toEqual([]);
    });
  });
}
