/** What every command shares: the error-to-exit-code mapping and the --json/--debug handling. */
import { ClusterNotReadyError, ConfigError, PoolUnavailableError, SpecError, TemporalUnavailableError, ToolMissingError } from '../errors';
import { EXIT, type ExitCode } from './exit-codes';
import { printError } from './output';

export interface GlobalOptions {
  json?: boolean;
  debug?: boolean;
}

/** Map an error to the exit code documented for it. */
export function exitCodeFor(err: unknown): ExitCode {
  if (err instanceof SpecError) return EXIT.invalidSpec;
  if (err instanceof TemporalUnavailableError || err instanceof ToolMissingError || err instanceof ClusterNotReadyError) return EXIT.unavailable;
  if (err instanceof ConfigError) return EXIT.usage;
  if (err instanceof PoolUnavailableError) return EXIT.capabilityMissing;
  return EXIT.failure;
}

/**
 * Wrap a command action: it returns its exit code; errors are printed (as `{error}` JSON with
 * --json) and mapped to exit codes. `process.exitCode` is set rather than exiting, so open
 * connections close cleanly.
 */
export function action<A extends unknown[]>(
  fn: (...args: A) => Promise<ExitCode | void>,
  render?: (err: unknown) => string | undefined,
): (...args: A) => Promise<void> {
  return async (...args: A) => {
    const command = args[args.length - 1] as { optsWithGlobals?: () => GlobalOptions };
    const opts = command?.optsWithGlobals?.() ?? {};
    try {
      process.exitCode = (await fn(...args)) ?? EXIT.ok;
    } catch (err) {
      printError(err, { json: opts.json, debug: opts.debug || process.env.KUBEDOS_DEBUG === '1', detail: render?.(err) });
      process.exitCode = exitCodeFor(err);
    }
  };
}
