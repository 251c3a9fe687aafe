/** Entry point of the `control` worker pool. See src/pools/pools.ts for what it serves and needs. */
import { createDeployActivities } from '../activities/deploy';
import { main } from './run-pool';

// The control pool runs the workflows, and the deploy activities of hollow targets (their nodes
// are local processes of this host: see TARGET_POOL).
main('control', createDeployActivities());
