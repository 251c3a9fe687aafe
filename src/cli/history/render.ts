/** A timeline for a terminal: a header, what went wrong, then one line per event, child runs indented inside. */
import { createColors } from 'picocolors';
import { formatDuration, formatOffset } from './summarize';
import type { EntryOutcome, RunStatus, Timeline, TimelineEntry } from './types';

const STATUS_WORDS: Record<RunStatus, string> = {
  running: 'RUNNING',
  completed: 'COMPLETED',
  failed: 'FAILED',
  cancelled: 'CANCELLED',
  terminated: 'TERMINATED',
  'timed-out': 'TIMED OUT',
  'continued-as-new': 'CONTINUED AS NEW',
};

/** The timeline for a terminal: a header, what went wrong, then one line per event. */
export function renderTimeline(t: Timeline, options: { color?: boolean; verbose?: boolean } = {}): string {
  const c = createColors(options.color ?? false);
  const marks: Record<EntryOutcome, string> = { ok: c.green('✓'), failed: c.red('✗'), retry: c.yellow('↻'), cancelled: c.yellow('⊘'), 'timed-out': c.red('⏱') };
  const status = STATUS_WORDS[t.status];
  const coloured = t.status === 'completed' ? c.green(status) : t.status === 'running' || t.status === 'continued-as-new' ? c.cyan(status) : c.red(status);
  const lines = [
    `${c.bold(`${t.workflowType} ${t.workflowId ?? ''}`.trim())}  ${coloured}${t.durationMs !== undefined ? ` after ${formatDuration(t.durationMs)}` : ''}`,
    `  run ${t.runId ?? '?'}  ·  started ${t.startedAt ?? '?'}${t.closedAt ? `  ·  closed ${t.closedAt}` : ''}`,
  ];
  if (t.parent) lines.push(`  parent ${t.parent}`);
  if (t.findings.length) {
    lines.push('', c.bold('what went wrong:'));
    for (const f of t.findings) lines.push(`  ${c.red('✗')} ${f}`);
  }
  lines.push('', c.bold('timeline:'));
  const walk = (entries: TimelineEntry[], prefix: string) => {
    for (const e of entries) {
      if (e.quiet && !options.verbose) continue;
      const mark = e.outcome ? marks[e.outcome] : ' ';
      const head = `${prefix}${c.dim(formatOffset(e.atMs).padStart(11))} ${mark} `;
      const text = e.outcome === 'failed' || e.outcome === 'timed-out' ? c.red(e.text) : e.outcome === 'retry' ? c.yellow(e.text) : e.text;
      lines.push(`${head}${text}`);
      const pad = `${prefix}${' '.repeat(14)}`;
      for (const d of e.details) lines.push(`${pad}${c.dim(d)}`);
      if (e.child?.timeline) {
        lines.push(`${pad}${c.dim(`┌ inside ${e.child.workflowId} (${STATUS_WORDS[e.child.timeline.status].toLowerCase()}):`)}`);
        walk(e.child.timeline.entries, `${pad}│ `);
        lines.push(`${pad}${c.dim('└')}`);
      }
    }
  };
  walk(t.entries, '');
  return lines.join('\n');
}
