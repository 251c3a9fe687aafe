/** Stop the run's Temporal dev server (and the production-shaped cluster, if a test started one), then remove its temp dir. */
import { rmSync } from 'node:fs';
import { stopProcess } from '../../src/exec/daemon';
import { stopSharedCluster } from './temporal-cluster';

export default async function globalTeardown(): Promise<void> {
  await stopSharedCluster();
  const pid = Number(process.env.KUBEDOS_TEST_TEMPORAL_PID);
  if (pid) await stopProcess(pid, 'start-dev', 10_000);
  const dir = process.env.KUBEDOS_TEST_DIR;
  if (dir && process.env.KUBEDOS_KEEP_TEST_DIR !== '1') rmSync(dir, { recursive: true, force: true });
}
