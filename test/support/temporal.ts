/** Connections and workers against the test run's dev server (see global-setup.ts). */
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Runtime, DefaultLogger, type Worker } from '@temporalio/worker';
import { createPoolWorker, type ActivityMap } from '../../workers/run-pool';
import type { PoolName } from '../../src/pools/pools';
import { codecDataConverter } from '../../src/temporal/codec';

let runtimeInstalled = false;
function quietRuntime(): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  try {
    Runtime.install({ logger: new DefaultLogger('WARN') });
  } catch {
    /* already installed by another test in this worker */
  }
}

export function testAddress(): string {
  const address = process.env.KUBEDOS_TEST_TEMPORAL_ADDRESS;
  if (!address) throw new Error('KUBEDOS_TEST_TEMPORAL_ADDRESS is not set: run the tests through jest (global-setup starts the server)');
  return address;
}

export interface TestEnv {
  client: Client;
  nativeConnection: NativeConnection;
  close(): Promise<void>;
}

export async function connectTestEnv(): Promise<TestEnv> {
  quietRuntime();
  const connection = await Connection.connect({ address: testAddress() });
  const nativeConnection = await NativeConnection.connect({ address: testAddress() });
  return {
    // The run's payload key (global-setup); pool workers pick up the same one in createPoolWorker.
    client: new Client({ connection, namespace: 'default', dataConverter: codecDataConverter() }),
    nativeConnection,
    async close() {
      await connection.close();
      await nativeConnection.close();
    },
  };
}

/** A pool worker on the shared bundle; queues are suffixed so parallel test files never meet. */
export async function testPoolWorker(
  env: TestEnv,
  pool: PoolName,
  taskQueue: string,
  activities: ActivityMap = {},
): Promise<Worker> {
  const bundle = process.env.KUBEDOS_TEST_WORKFLOW_BUNDLE!;
  return createPoolWorker(pool, env.nativeConnection, 'default', activities, {
    taskQueue,
    ...(pool === 'control' ? { workflowBundle: { codePath: bundle }, workflowsPath: undefined } : {}),
  });
}
