/**
 * A kvm-pool worker in a process of its own, so a test can SIGKILL it mid-step and start another:
 * the deploy activities as workers/run-pool.ts wires them (drivers from the registry, state
 * under KUBEDOS_HOME, artifacts fetched and verified from a store), on the test run's dev server.
 *
 *   node -r ts-node/register/transpile-only test/support/kvm-worker-process.ts
 *
 * Environment: KUBEDOS_HOME, KUBEDOS_TEST_TEMPORAL_ADDRESS (from the test run), and
 * KD_WORKER_QUEUE, KD_WORKER_STORE (a local store), KD_WORKER_ARTIFACTS, KD_WORKER_SIGNERS
 * (allowed_signers), KD_WORKER_SSH_KEY (identity for ssh health checks). Prints `worker ready`.
 */
import { artifactsFromStore, createDeployActivities } from '../../activities/deploy';
import { createSshProbe } from '../../src/health/ssh-probe';
import { LocalStore } from '../../src/store/local';
import { connectTestEnv, testPoolWorker } from './temporal';

async function main(): Promise<void> {
  const need = (name: string) => {
    const value = process.env[name];
    if (!value) throw new Error(`${name} is not set`);
    return value;
  };
  const env = await connectTestEnv();
  const deploy = createDeployActivities({
    fetchArtifact: artifactsFromStore(new LocalStore(need('KD_WORKER_STORE')), need('KD_WORKER_ARTIFACTS'), need('KD_WORKER_SIGNERS')),
    ssh: createSshProbe({ identityFile: need('KD_WORKER_SSH_KEY') }),
  });
  const worker = await testPoolWorker(env, 'kvm', need('KD_WORKER_QUEUE'), deploy as never);
  const stop = () => worker.shutdown();
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  console.log('worker ready');
  await worker.run();
  await env.close();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
