/**
 * The activity boundary for errors. Every KubedosError an activity throws leaves the worker as an
 * ApplicationFailure whose `type` is the error's class name, non-retryable unless the class (or
 * the instance) is retryable, with the hint in its details and its causes as a chain of failures
 * of their own. Workflows branch on the type, retry policies need no lists of names, and the CLI
 * prints the hint a worker wrote (src/cli/output.ts reads it back with `failureHint`).
 */
import { ApplicationFailure, TemporalFailure } from '@temporalio/common';
import type { ActivityExecuteInput, ActivityInboundCallsInterceptor, ActivityInterceptorsFactory, Next } from '@temporalio/worker';
import { KubedosError } from '../errors';

/** What a KubeDos failure carries in its first detail. */
export interface FailureDetails {
  hint?: string;
  /** The error's own typed fields (node id, target, expected digest, …), when they are plain data. */
  fields?: Record<string, unknown>;
}

const DEPTH = 8;

function plainFields(err: KubedosError): Record<string, unknown> | undefined {
  const skip = new Set(['name', 'message', 'stack', 'cause', 'hint', 'retryable']);
  const fields = Object.fromEntries(
    Object.entries(err).filter(([key, value]) => !skip.has(key) && value !== undefined && (typeof value !== 'object' || Array.isArray(value))),
  );
  return Object.keys(fields).length ? fields : undefined;
}

/** The failure an error becomes at the boundary; anything that is not a KubedosError passes as it is. */
export function toApplicationFailure(err: unknown, depth = 0): unknown {
  if (!(err instanceof KubedosError) || depth > DEPTH) return err;
  const cause = err.cause instanceof Error ? toApplicationFailure(err.cause, depth + 1) : undefined;
  const details: FailureDetails = { hint: err.hint, fields: plainFields(err) };
  return ApplicationFailure.create({
    type: err.name,
    message: err.message,
    nonRetryable: !err.retryable,
    details: [details],
    cause: cause instanceof Error ? cause : undefined,
  });
}

/** Converts on the way out of every activity; a cancelled activity's error passes unchanged, so it stays a cancellation. */
class KubedosFailureInterceptor implements ActivityInboundCallsInterceptor {
  constructor(private readonly signal: AbortSignal) {}

  async execute(input: ActivityExecuteInput, next: Next<ActivityInboundCallsInterceptor, 'execute'>): Promise<unknown> {
    try {
      return await next(input);
    } catch (err) {
      if (this.signal.aborted || err instanceof TemporalFailure) throw err;
      throw toApplicationFailure(err);
    }
  }
}

/** The worker's `interceptors.activity` entry. */
export const kubedosFailureInterceptors: ActivityInterceptorsFactory = (ctx) => ({ inbound: new KubedosFailureInterceptor(ctx.cancellationSignal) });

/**
 * The hint for an error: its own, or, for a failure that crossed workers (workflow → child →
 * activity → the typed error), the first one down its cause chain: the error that was thrown
 * where the work failed, which knows most about it.
 */
export function failureHint(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 2 * DEPTH; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof KubedosError && e.hint) return e.hint;
    if (e instanceof ApplicationFailure) {
      const detail = e.details?.[0] as FailureDetails | undefined;
      if (detail && typeof detail === 'object' && typeof detail.hint === 'string') return detail.hint;
    }
  }
  return undefined;
}
