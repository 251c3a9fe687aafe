/**
 * A run's event history read into a timeline: each event goes to its handler (./events.ts), then
 * what went wrong is gathered, nested runs included. Pure: it takes a history whose payloads are
 * already decoded (`decodeHistoryPayloads`).
 */
import { num, optionalTsToMs, type HistoryEvent } from './decode';
import { EVENT_HANDLERS, type EventContext, type EventType, type NewEntry, type RunState } from './events';
import { attemptText, describeFailure } from './summarize';
import type { HistoryTree, Timeline, TimelineEntry } from './types';

const HANDLED = Object.keys(EVENT_HANDLERS) as EventType[];

/** The event's type (its attributes field) and attributes, when the table has a handler for it. */
function handlerOf(event: HistoryEvent): { type: EventType; attributes: object } | undefined {
  for (const type of HANDLED) {
    const attributes = event[type];
    if (attributes) return { type, attributes };
  }
  return undefined;
}

/**
 * Read a history into a timeline. `origin` (ms since the epoch) is where +0 is; by default the
 * run's first event. Child runs found in `tree.children` are read too and attached to the entry
 * that closes them.
 */
export function buildTimeline(tree: HistoryTree, options: { origin?: number } = {}): Timeline {
  const events: HistoryEvent[] = tree.history.events ?? [];
  const first = optionalTsToMs(events[0]?.eventTime) ?? 0;
  const origin = options.origin ?? first;
  const timeline: Timeline = { workflowId: tree.workflowId, runId: tree.runId, workflowType: '?', status: 'running', findings: [], entries: [] };
  const run: RunState = {
    tree,
    timeline,
    nested: (sub) => buildTimeline(sub, { origin }),
    activities: new Map(),
    calls: new Map(),
    children: new Map(),
    timers: new Map(),
    updates: new Map(),
    signalsOut: new Map(),
    localSeqs: new Set(),
    round: 0,
  };

  for (const event of events) {
    const found = handlerOf(event);
    if (!found) continue;
    const eventId = num(event.eventId);
    const ms = optionalTsToMs(event.eventTime) ?? first;
    const add = ({ at = ms, ...entry }: NewEntry): TimelineEntry => {
      const full: TimelineEntry = { eventId, atMs: at - origin, time: new Date(at).toISOString(), details: [], ...entry };
      timeline.entries.push(full);
      return full;
    };
    const ctx: EventContext = { run, eventId, ms, add };
    (EVENT_HANDLERS[found.type] as (a: object, ev: EventContext) => void)(found.attributes, ctx);
  }

  const last = events.at(-1);
  if (timeline.status !== 'running' && last) {
    const closed = optionalTsToMs(last.eventTime) ?? first;
    timeline.closedAt = new Date(closed).toISOString();
    timeline.durationMs = closed - first;
  }
  timeline.findings = findingsOf(timeline);
  return timeline;
}

/** What went wrong in a run and in the child runs shown inside it. */
function findingsOf(t: Timeline): string[] {
  const out: string[] = [];
  if (t.failure) out.push(`${t.workflowType} ${t.status}: ${describeFailure(t.failure)}`);
  for (const e of t.entries) {
    if (e.kind === 'workflow' && e.outcome) continue; // the run's own close, said above
    if (e.child && (e.outcome === 'failed' || e.outcome === 'timed-out')) {
      const inner = e.child.timeline?.findings ?? [];
      if (inner.length) for (const f of inner) out.push(`${e.child.label} › ${f}`);
      else out.push([`${e.child.label}: ${e.child.outcome ?? e.outcome}`, ...e.details].join(': '));
    } else if (!e.child && (e.outcome === 'failed' || e.outcome === 'timed-out')) {
      const how = e.activity?.local
        ? `after ${e.activity.attempt ?? 1} attempt${(e.activity.attempt ?? 1) === 1 ? '' : 's'}`
        : `${attemptText(e.activity?.attempt ?? 1, e.activity?.maxAttempts)}${e.error?.retryState ? `; ${e.error.retryState}` : ''}`;
      const where = e.activity ? `${e.activity.round ? `try ${e.activity.round}: ` : ''}${e.activity.type} ${e.outcome === 'failed' ? 'failed' : 'timed out'} (${how})` : e.text;
      out.push(`${where}: ${e.error ? describeFailure(e.error) : e.details.join('; ')}`);
    }
  }
  return out;
}

/** Child runs a timeline names, to fetch and show inside it: the failed ones, or all. */
export function childRuns(t: Timeline, which: 'failed' | 'all'): { workflowId: string; runId?: string }[] {
  const seen = new Set<string>();
  const out: { workflowId: string; runId?: string }[] = [];
  for (const e of t.entries) {
    if (!e.child || e.child.workflowId === '?' || e.kind !== 'child' || e.outcome === undefined) continue;
    if (which === 'failed' && e.outcome !== 'failed' && e.outcome !== 'timed-out') continue;
    const key = e.child.runId ?? e.child.workflowId;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ workflowId: e.child.workflowId, runId: e.child.runId });
  }
  return out;
}
