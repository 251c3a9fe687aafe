/** Entry point of the `build` worker pool. See src/pools/pools.ts for what it serves and needs. */
import { main } from './run-pool';

main('build');
