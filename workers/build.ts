/** Entry point of the `build` worker pool: the Foundry. See src/pools/pools.ts for what it needs. */
import { createBuildActivities } from '../activities/build';
import { defaultBuildDirs, defaultStore } from '../src/store/default';
import { FoundrySigner } from '../src/store/signing';
import { main } from './run-pool';

main('build', createBuildActivities({ store: defaultStore(), signer: new FoundrySigner(), ...defaultBuildDirs() }));
