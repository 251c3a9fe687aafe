/**
 * A kvm-pool worker in a process of its own, serving the deploy activities of Firecracker targets
 * (the real driver), so a test can kill it with SIGKILL in the middle of a step:
 *
 *   node -r ts-node/register/transpile-only firecracker-kvm-worker.ts CONFIG.json
 *
 * CONFIG: { address, queue, stateDir, cgroupRoot, bundles: { <image digest>: artifact } }. Prints
 * `worker ready` once polling. The payload key comes from the environment (KUBEDOS_CODEC_KEY).
 */
import { readFileSync } from 'node:fs';
import { NativeConnection } from '@temporalio/worker';
import { createDeployActivities } from '../../activities/deploy';
import type { TargetOf } from '../../src/platform/types';
import type { ImageSource } from '../../src/targets/driver';
import { FirecrackerDriver } from '../../src/targets/firecracker/driver';
import { createPoolWorker } from '../../workers/run-pool';

interface Config {
  address: string;
  queue: string;
  stateDir: string;
  cgroupRoot: string;
  bundles: Record<string, NonNullable<ImageSource['artifact']>>;
}

async function main(): Promise<void> {
  const config = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as Config;
  const connection = await NativeConnection.connect({ address: config.address });
  const activities = createDeployActivities({
    driverFor: (t) => new FirecrackerDriver(t.name, t.spec as TargetOf<'firecracker'>, { stateDir: config.stateDir }, { cgroupRoot: config.cgroupRoot }),
    fetchArtifact: async (image) => {
      const artifact = config.bundles[image.digest];
      if (!artifact) throw new Error(`no bundle for ${image.digest}`);
      return artifact;
    },
  });
  const worker = await createPoolWorker('kvm', connection, 'default', activities as never, { taskQueue: config.queue });
  process.stdout.write('worker ready\n');
  await worker.run();
}

main().catch((err: unknown) => {
  process.stderr.write(`${String((err as Error)?.stack ?? err)}\n`);
  process.exit(1);
});
