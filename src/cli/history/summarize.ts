/** Short words for what a timeline shows: values in one line, failures, attempts, durations. */
import { ENCRYPTED_VALUE } from './decode';
import type { FailureSummary } from './types';

function shortString(s: string): string {
  if (/^[0-9a-f]{64}$/.test(s)) return `${s.slice(0, 12)}…`;
  const cut = s.length > 60 ? `${s.slice(0, 59)}…` : s;
  return /^[\w.@:/+-]+…?$/.test(cut) ? cut : JSON.stringify(cut);
}

function compact(v: unknown, depth: number): string {
  if (v === undefined) return 'undefined';
  if (v === null) return 'null';
  if (typeof v === 'string') return v === ENCRYPTED_VALUE ? v : shortString(v);
  if (typeof v !== 'object') return String(v);
  if (Array.isArray(v)) {
    if (depth >= 3) return `[…${v.length}]`;
    const items = v.slice(0, 4).map((x) => compact(x, depth + 1));
    if (v.length > 4) items.push(`…+${v.length - 4}`);
    return `[${items.join(', ')}]`;
  }
  const o = v as Record<string, unknown>;
  // Images and targets read best by name: worker@0123456789ab, sim.
  if (typeof o.name === 'string' && typeof o.digest === 'string') return `${o.name}@${o.digest.slice(0, 12)}`;
  if (typeof o.name === 'string' && 'spec' in o) return o.name;
  if (depth >= 2) return '{…}';
  const keys = Object.keys(o).filter((k) => o[k] !== undefined);
  const parts = keys.slice(0, 8).map((k) => `${k}: ${compact(o[k], depth + 1)}`);
  if (keys.length > 8) parts.push(`…+${keys.length - 8}`);
  return `{${parts.join(', ')}}`;
}

/** A value in one short line: digests shortened, long strings cut, deep objects elided. */
export function summarize(value: unknown, max = 160): string {
  const s = compact(value, 0);
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** The arguments (or results) of a call in one line: '' for none, the value itself for one. */
export const argsSummary = (values: unknown[]) => (values.length === 0 ? '' : values.length === 1 ? summarize(values[0]) : summarize(values));

/** `Type: message ← cause ← cause`. */
export function describeFailure(f: FailureSummary): string {
  const head = f.type && f.message ? `${f.type}: ${f.message}` : f.type || f.message || 'unknown failure';
  return [head, ...f.causes].join(' ← ');
}

/** `attempt 2 of 5`, `attempt 2`, or '' when the attempt is unknown. */
export const attemptText = (attempt: number | undefined, max: number | undefined) =>
  attempt === undefined ? '' : max ? `attempt ${attempt} of ${max}` : `attempt ${attempt}`;

/** `+1.234s`, `+2m03.4s`, `+1h02m03s`. */
export function formatOffset(ms: number): string {
  const sign = ms < 0 ? '-' : '+';
  return `${sign}${formatDuration(Math.abs(ms))}`;
}

export function formatDuration(ms: number): string {
  if (ms < 60_000) return `${(ms / 1000).toFixed(3)}s`;
  const s = Math.floor(ms / 1000);
  if (ms < 3_600_000) return `${Math.floor(s / 60)}m${((ms % 60_000) / 1000).toFixed(1).padStart(4, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m${String(s % 60).padStart(2, '0')}s`;
}
