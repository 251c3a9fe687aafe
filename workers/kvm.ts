/**
 * Entry point of the `kvm` worker pool (see src/pools/pools.ts): deploy activities for QEMU/KVM
 * targets, local or over SSH. Images come from the configured artifact store, verified (signed
 * manifest, artifact digest) into $KUBEDOS_HOME/artifacts before a driver sees them; `ssh` health
 * checks run over the SSH layer, pinned to each node's recorded host key, logging in as root with
 * the SSH agent's keys (SSH_AUTH_SOCK) — one of them must be among the fleet's authorized keys.
 */
import path from 'node:path';
import { artifactsFromStore, createDeployActivities } from '../activities/deploy';
import { stateDir } from '../src/config/paths';
import { createSshProbe } from '../src/health/ssh-probe';
import { configuredStoreOrRefuse, main } from './run-pool';

const store = configuredStoreOrRefuse('kvm');

main(
  'kvm',
  createDeployActivities({
    fetchArtifact: artifactsFromStore(store, path.join(stateDir(), 'artifacts')),
    ssh: createSshProbe(),
  }),
);
