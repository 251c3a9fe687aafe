/**
 * A cloud-pool worker process for the aws tests (so a test can SIGKILL it): the deploy activities
 * with the real AwsDriver, on the queue in KUBEDOS_TEST_QUEUE, against the endpoints in the
 * standard AWS_ENDPOINT_URL_* variables. The artifact is already local (KUBEDOS_TEST_ARTIFACT:
 * JSON {format, sha256, size, path}); import polling every 500 ms. Heartbeats are flushed every
 * second (the SDK's default throttle is up to 60 s) so the test can kill it after the import
 * task id has reached the server.
 */
import { NativeConnection } from '@temporalio/worker';
import { createDeployActivities, type TargetRef } from '../../../activities/deploy';
import { AwsDriver } from '../../../src/targets/aws/driver';
import type { AwsTargetSpec } from '../../../src/targets/aws';
import { createPoolWorker } from '../../../workers/run-pool';

async function main(): Promise<void> {
  const artifact = JSON.parse(process.env.KUBEDOS_TEST_ARTIFACT!) as { format: string; sha256: string; size: number; path: string };
  const drivers = new Map<string, AwsDriver>();
  const driverFor = (t: TargetRef) => {
    let d = drivers.get(t.name);
    if (!d) drivers.set(t.name, (d = new AwsDriver(t.name, t.spec as AwsTargetSpec, { stateDir: '/nonexistent' }, { import: { pollIntervalMs: 500 } })));
    return d;
  };
  const activities = createDeployActivities({ driverFor, fetchArtifact: async () => artifact });
  const connection = await NativeConnection.connect({ address: process.env.KUBEDOS_TEST_TEMPORAL_ADDRESS! });
  const worker = await createPoolWorker('cloud', connection, 'default', activities as never, { taskQueue: process.env.KUBEDOS_TEST_QUEUE!, maxHeartbeatThrottleInterval: '1s' });
  process.stdout.write('worker ready\n');
  const stop = () => worker.shutdown();
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  await worker.run();
  for (const d of drivers.values()) await d.close();
  await connection.close();
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
