/**
 * The embedded stack's supervisor as a daemon, started in the background by the first command
 * that needs the stack when no `kubedos dev` runs: `node dist/src/temporal/stack-daemon.js
 * --pools control,build [--retry]`. It restarts what crashes and records it in stack.json (see
 * stack.ts); SIGTERM stops the whole stack.
 */
import { logger } from '../log';
import { runStackDaemon } from './stack';

runStackDaemon(process.argv.slice(2)).then(
  () => process.exit(0),
  (err: unknown) => {
    logger.error({ error: String((err as Error)?.stack ?? err) }, 'the stack supervisor failed');
    process.exit(1);
  },
);
