/**
 * Rendering for the CLI: results on stdout (JSON with --json), everything else on stderr.
 * Colour comes from picocolors, which honours NO_COLOR and non-TTY output.
 */
import { ActivityFailure, ApplicationFailure, ChildWorkflowFailure } from '@temporalio/common';
import pc from 'picocolors';
import { SpecError } from '../errors';
import { failureHint } from '../temporal/activity-failures';

export { pc as colors };

/** Align columns; the header row is bold. */
export function renderTable(headers: string[], rows: string[][]): string {
  const visible = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, '').length;
  const widths = headers.map((h, i) => Math.max(visible(h), ...rows.map((r) => visible(r[i] ?? ''))));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c + ' '.repeat(widths[i]! - visible(c)))).join('  ').trimEnd();
  return [pc.bold(line(headers)), ...rows.map(line)].join('\n');
}

export function printJson(data: unknown): void {
  process.stdout.write(`${JSON.stringify(data, null, 2)}\n`);
}

/** Progress and notices that are not the command's result. */
export function note(message: string): void {
  process.stderr.write(`${message}\n`);
}

/** One link of a cause chain as people read it: where it failed, or what failed and its type. */
function describeCause(cause: unknown): string {
  if (cause instanceof ActivityFailure) return `activity ${cause.activityType ?? '?'} failed${cause.retryState ? ` (${cause.retryState.toLowerCase().replace(/_/g, ' ')})` : ''}`;
  if (cause instanceof ChildWorkflowFailure) return `workflow ${cause.execution?.workflowId ?? cause.workflowType ?? '?'} failed`;
  if (cause instanceof ApplicationFailure && cause.type) return `${cause.type}: ${cause.message}`;
  return cause instanceof Error ? cause.message : String(cause);
}

function causeChain(err: unknown): string[] {
  const chain: string[] = [];
  let cause = (err as { cause?: unknown })?.cause;
  while (cause && chain.length < 8) {
    chain.push(describeCause(cause));
    cause = (cause as { cause?: unknown }).cause;
  }
  return chain;
}

/** The `{error: …}` object printed with --json. */
export function errorJson(err: unknown): { error: Record<string, unknown> } {
  const e = err as Error;
  return {
    error: {
      name: e?.name ?? 'Error',
      message: e?.message ?? String(err),
      hint: failureHint(err),
      issues: err instanceof SpecError ? err.issues : undefined,
      causes: causeChain(err),
    },
  };
}

/**
 * Print an error for people: message, each cause, the hint; the stack only with --debug. A failure
 * raised on a worker arrives wrapped (workflow → activity → the typed error): its hint is the
 * deepest one in the chain.
 */
export function printError(err: unknown, options: { json?: boolean; debug?: boolean; detail?: string } = {}): void {
  if (options.json) {
    printJson(errorJson(err));
    return;
  }
  const e = err as Error;
  const lines = [`${pc.red(pc.bold('error'))}: ${e?.message ?? String(err)}`];
  if (options.detail) lines.push(options.detail);
  for (const cause of causeChain(err)) lines.push(`  ${pc.dim('caused by:')} ${cause}`);
  const hint = failureHint(err);
  if (hint) lines.push(`  ${pc.cyan('hint:')} ${hint}`);
  if (options.debug && e?.stack) lines.push(pc.dim(e.stack));
  process.stderr.write(`${lines.join('\n')}\n`);
}
