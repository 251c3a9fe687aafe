/**
 * Entry point of the `control` worker pool: the workflows, and the deploy activities of the
 * target types routed here (hollow nodes are local processes of this host), wired by run-pool.
 */
import { main } from './run-pool';

main('control');
