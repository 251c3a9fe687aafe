/** Entry point of the `cloud` worker pool: the deploy activities of the target types routed here, wired by run-pool. */
import { main } from './run-pool';

main('cloud');
