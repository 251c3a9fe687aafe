/**
 * Entry point of the `build` worker pool: the Foundry. See src/pools/pools.ts for what it needs.
 *
 * The store is the configured one (S3 when KUBEDOS_S3_BUCKET is set, else the local store). With
 * S3, builds are staged in this host's local store and published from here: the process also
 * polls a queue of its own (`kubedos-build@<hostname>`) on which the workflow runs publishBuild.
 */
import { createBuildActivities } from '../activities/build';
import { createPublishActivities, hostPublishQueue } from '../activities/publish';
import { POOLS } from '../src/pools/pools';
import { defaultBuildDirs, defaultStore } from '../src/store/default';
import { LocalStore } from '../src/store/local';
import { FoundrySigner } from '../src/store/signing';
import { configuredStoreOrRefuse, main } from './run-pool';

const store = configuredStoreOrRefuse('build');
const staging = store instanceof LocalStore ? undefined : defaultStore();
const publishQueue = staging ? hostPublishQueue(POOLS.build.taskQueue) : undefined;
const publish = createPublishActivities({ store, staging, signer: new FoundrySigner() });

main(
  'build',
  { ...createBuildActivities({ store, staging, publishQueue, ...defaultBuildDirs() }), ...publish },
  publishQueue ? [{ taskQueue: publishQueue, activities: publish }] : [],
);
