/** Entry point of the `vsphere` worker pool: the deploy activities of the target types routed here, wired by run-pool. */
import { main } from './run-pool';

main('vsphere');
