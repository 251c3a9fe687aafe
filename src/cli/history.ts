/**
 * A run's event history as a person reads it: what started, which activity ran on which node,
 * which attempt failed with which error, what was retried, what the run ended with. Pure: it
 * takes a history (payloads already decoded by `decodeHistoryPayloads`) and returns a timeline;
 * `kubedos history` fetches, decodes and prints it (src/cli/commands/runs.ts).
 */
import { defaultPayloadConverter, type PayloadCodec } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { createColors } from 'picocolors';
import { ENCRYPTED_ENCODING } from '../temporal/codec';

export type History = temporal.api.history.v1.IHistory;
type Payload = temporal.api.common.v1.IPayload;

const text = (b: Uint8Array | string | null | undefined) => (b == null ? undefined : typeof b === 'string' ? b : Buffer.from(b).toString('utf8'));

function isPayload(value: unknown): value is Payload {
  const v = value as Payload | null;
  return typeof v === 'object' && v !== null && typeof v.metadata === 'object' && v.metadata !== null && 'encoding' in v.metadata;
}

/**
 * Run every payload of a history through the codecs (in decode order), in place. Search
 * attributes are never encoded and are left alone. A payload a codec cannot decode (a key this
 * process lacks) stays as it is; the count of those is returned so callers can say so.
 */
export async function decodeHistoryPayloads(history: History, codecs: readonly PayloadCodec[]): Promise<{ undecodable: number; errors: Error[] }> {
  const slots: { holder: Record<string, unknown>; key: string; payload: Payload }[] = [];
  const seen = new Set<unknown>();
  const walk = (node: unknown) => {
    if (typeof node !== 'object' || node === null || seen.has(node) || ArrayBuffer.isView(node)) return;
    seen.add(node);
    for (const [key, value] of Object.entries(node)) {
      if (key === 'searchAttributes') continue;
      if (isPayload(value)) slots.push({ holder: node as Record<string, unknown>, key, payload: value });
      else walk(value);
    }
  };
  walk(history);
  const errors: Error[] = [];
  let undecodable = 0;
  for (const slot of slots) {
    let payloads: Payload[] = [slot.payload];
    try {
      for (const codec of [...codecs].reverse()) payloads = await codec.decode(payloads as never);
      slot.holder[slot.key] = payloads[0];
    } catch (err) {
      undecodable++;
      if (errors.length < 3) errors.push(err as Error);
    }
  }
  return { undecodable, errors };
}

/** Whether a payload is still encrypted (decoding it failed). */
export function isEncrypted(payload: Payload | null | undefined): boolean {
  return text(payload?.metadata?.encoding) === ENCRYPTED_ENCODING;
}

// ---------------------------------------------------------------------------------------------
// the timeline

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;
type Failure = temporal.api.failure.v1.IFailure;
type Payloads = temporal.api.common.v1.IPayloads;
const enums = temporal.api.enums.v1;

export type EntryKind = 'workflow' | 'workflow-task' | 'activity' | 'child' | 'timer' | 'signal' | 'update' | 'search-attributes' | 'marker' | 'external';
export type EntryOutcome = 'ok' | 'failed' | 'retry' | 'cancelled' | 'timed-out';
export type RunStatus = 'running' | 'completed' | 'failed' | 'cancelled' | 'terminated' | 'timed-out' | 'continued-as-new';

/** A failure as history records it: its type, message, and the chain of causes. */
export interface FailureSummary {
  /** ApplicationFailure type (the error's class name), or the kind of failure (timeout, cancelled…). */
  type?: string;
  message: string;
  causes: string[];
  nonRetryable?: boolean;
  /** Why the server stopped retrying, in words. */
  retryState?: string;
}

/** One line of the timeline (one history event, or a pair of them read together). */
export interface TimelineEntry {
  eventId: number;
  /** Milliseconds since the first event of the outermost run rendered. */
  atMs: number;
  time: string;
  kind: EntryKind;
  outcome?: EntryOutcome;
  text: string;
  /** Further lines: input or result summaries, the error. */
  details: string[];
  /** Adds nothing to the lines around it (a first attempt started at once): shown only when verbose. */
  quiet?: boolean;
  activity?: {
    type: string;
    /** 1 for the first call of this activity type in the run, 2 for the second… */
    call: number;
    /** Temporal's retry attempt of this call. */
    attempt?: number;
    maxAttempts?: number;
    nodeId?: string;
    /** For node workflows: which try of the node (each try creates the node afresh). */
    round?: number;
    /** A local activity: run by the workflow's own worker, recorded as a marker when it ended. */
    local?: boolean;
  };
  child?: {
    workflowId: string;
    runId?: string;
    workflowType: string;
    /** What the child is for: `node <id>`, `rollout to generation <n>`, else its workflow id. */
    label: string;
    /** How it ended, in words (on the entry that closes it). */
    outcome?: string;
    /** The child's own timeline, when its history was given. */
    timeline?: Timeline;
  };
  error?: FailureSummary;
}

export interface Timeline {
  workflowId?: string;
  runId?: string;
  workflowType: string;
  status: RunStatus;
  startedAt?: string;
  closedAt?: string;
  durationMs?: number;
  taskQueue?: string;
  parent?: string;
  input?: string;
  result?: string;
  failure?: FailureSummary;
  /** What went wrong, one line each, nested runs included: which node, which step, which try, which error. */
  findings: string[];
  entries: TimelineEntry[];
}

/** A run's history with the histories of the child runs to show inside it, keyed by child run id (or workflow id). */
export interface HistoryTree {
  history: History;
  workflowId?: string;
  runId?: string;
  children?: ReadonlyMap<string, HistoryTree>;
}

/**
 * Activity types that begin a fresh try of a workflow's whole job, by workflow type: each
 * createNode of fleetNode is a new node after the previous one was destroyed.
 */
const ROUND_STARTS: Record<string, string> = { fleetNode: 'createNode' };

const ENCRYPTED_VALUE = '‹encrypted›';

/** Marker the SDK's core records for each local activity. */
const LOCAL_ACTIVITY_MARKER = 'core_local_activity';

interface LocalActivityData {
  seq?: number;
  attempt?: number;
  activity_type?: string;
  complete_time?: { seconds?: number; nanos?: number };
  /** Set when the attempt failed and the next one waits on a timer. */
  backoff?: { seconds?: number; nanos?: number } | null;
}

function valueOf(p: Payload | null | undefined): unknown {
  if (!p) return undefined;
  if (isEncrypted(p)) return ENCRYPTED_VALUE;
  try {
    return defaultPayloadConverter.fromPayload(p as never);
  } catch {
    return `‹${text(p.metadata?.encoding) ?? 'unknown'} payload›`;
  }
}

/** Milliseconds of a proto Timestamp or Duration (seconds as Long, number or string, as decoders vary). */
function optionalTsToMs(ts: { seconds?: unknown; nanos?: number | null } | null | undefined): number | undefined {
  if (!ts) return undefined;
  return Number(String(ts.seconds ?? 0)) * 1000 + Math.floor((ts.nanos ?? 0) / 1_000_000);
}

const valuesOf = (ps: Payloads | null | undefined): unknown[] => (ps?.payloads ?? []).map(valueOf);
const num = (v: unknown): number => Number(v == null ? 0 : String(v));

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

const argsSummary = (values: unknown[]) => (values.length === 0 ? '' : values.length === 1 ? summarize(values[0]) : summarize(values));

function enumName(table: Record<string, unknown>, value: unknown, prefix: string): string | undefined {
  if (value == null) return undefined;
  const name = typeof value === 'string' ? value : Object.keys(table).find((k) => table[k] === value);
  if (!name) return String(value);
  return name.replace(prefix, '').toLowerCase().replace(/_/g, '-');
}

const RETRY_STATES: Record<string, string | undefined> = {
  unspecified: undefined,
  'in-progress': 'will be retried',
  'non-retryable-failure': 'not retried: the error type is non-retryable',
  timeout: 'gave up: out of time (schedule-to-close or run timeout)',
  'maximum-attempts-reached': 'gave up: no attempts left',
  'retry-policy-not-set': undefined,
  'internal-server-error': 'gave up: server error',
  'cancel-requested': 'not retried: cancellation requested',
};

function retryStateText(value: unknown): string | undefined {
  const name = enumName(enums.RetryState as never, value, 'RETRY_STATE_');
  return name === undefined ? undefined : name in RETRY_STATES ? RETRY_STATES[name] : name;
}

function failureKind(f: Failure): string | undefined {
  if (f.applicationFailureInfo) return f.applicationFailureInfo.type || 'Error';
  if (f.timeoutFailureInfo) return `timeout (${enumName(enums.TimeoutType as never, f.timeoutFailureInfo.timeoutType, 'TIMEOUT_TYPE_')})`;
  if (f.canceledFailureInfo) return 'cancelled';
  if (f.terminatedFailureInfo) return 'terminated';
  if (f.serverFailureInfo) return 'server error';
  if (f.resetWorkflowFailureInfo) return 'reset';
  return undefined;
}

function oneFailure(f: Failure): string {
  const kind = failureKind(f);
  const message = f.message || '';
  if (f.activityFailureInfo) return `activity ${f.activityFailureInfo.activityType?.name ?? ''} failed`.trim();
  if (f.childWorkflowExecutionFailureInfo) return `child ${f.childWorkflowExecutionFailureInfo.workflowExecution?.workflowId ?? ''} failed`.trim();
  return kind && message ? `${kind}: ${message}` : kind || message || 'unknown failure';
}

/** A failure and its causes, as recorded. */
export function failureSummary(f: Failure | null | undefined, retryState?: unknown): FailureSummary | undefined {
  if (!f) return undefined;
  const causes: string[] = [];
  for (let c = f.cause; c && causes.length < 5; c = c.cause) causes.push(oneFailure(c));
  return {
    type: failureKind(f),
    message: f.message || '',
    causes,
    nonRetryable: f.applicationFailureInfo?.nonRetryable || undefined,
    retryState: retryStateText(retryState),
  };
}

/** `Type: message ← cause ← cause`. */
export function describeFailure(f: FailureSummary): string {
  const head = f.type && f.message ? `${f.type}: ${f.message}` : f.type || f.message || 'unknown failure';
  return [head, ...f.causes].join(' ← ');
}

/** `child fleetNode for node X`, `child rollout to generation N`, `child manufacture <id>`. */
function childName(c: { workflowType: string; label: string }): string {
  if (c.label.startsWith('node ')) return `child ${c.workflowType} for ${c.label}`;
  if (c.label.startsWith(`${c.workflowType} `)) return `child ${c.label}`;
  return `child ${c.workflowType} ${c.label}`;
}

function childLabel(workflowId: string): string {
  const node = /\/node\/([^/]+)$/.exec(workflowId);
  if (node) return `node ${node[1]}`;
  const generation = /\/rollout\/g(\d+)$/.exec(workflowId);
  if (generation) return `rollout to generation ${generation[1]}`;
  return workflowId;
}

/** A child's result read for what it means: a node record, a rollout result, or just a summary. */
function childResult(value: unknown): { outcome: EntryOutcome; text: string; details: string[] } {
  const v = (value ?? {}) as Record<string, unknown>;
  if (typeof v.nodeId === 'string' && v.state === 'failed') {
    return { outcome: 'failed', text: `node failed after ${v.attempts ?? '?'} tr${v.attempts === 1 ? 'y' : 'ies'}`, details: v.error ? [String(v.error)] : [] };
  }
  if (typeof v.nodeId === 'string' && v.state === 'ready') {
    const ms = typeof v.readyMs === 'number' ? ` in ${(v.readyMs / 1000).toFixed(1)} s` : '';
    return { outcome: 'ok', text: `node ready${ms}${typeof v.attempts === 'number' && v.attempts > 1 ? ` on try ${v.attempts}` : ''}`, details: [] };
  }
  if (typeof v.outcome === 'string' && Array.isArray(v.nodes)) {
    return { outcome: v.outcome === 'completed' ? 'ok' : 'failed', text: `rollout ${v.outcome}: ${v.nodes.length} node(s) of generation ${v.generation}`, details: v.error ? [String(v.error)] : [] };
  }
  return { outcome: 'ok', text: 'completed', details: value === undefined ? [] : [`result: ${summarize(value)}`] };
}

function searchAttributesText(fields: Record<string, Payload> | null | undefined): string {
  // Sorted: the server keeps them in a map, in no particular order.
  return Object.entries(fields ?? {})
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, p]) => `${k}=${summarize(valueOf(p))}`)
    .join(', ');
}

const attemptText = (attempt: number | undefined, max: number | undefined) =>
  attempt === undefined ? '' : max ? `attempt ${attempt} of ${max}` : `attempt ${attempt}`;

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
  const activities = new Map<number, { type: string; call: number; maxAttempts?: number; nodeId?: string; round?: number; attempt?: number; scheduledMs?: number; input: unknown[] }>();
  const calls = new Map<string, number>();
  const children = new Map<number, { workflowId: string; workflowType: string; label: string; runId?: string }>();
  const timers = new Map<number, { timerId: string; ms?: number }>();
  const updates = new Map<string, string>();
  const signalsOut = new Map<number, { name: string; to: string }>();
  const localSeqs = new Set<number>();
  let round = 0;

  for (const event of events) {
    const eventId = num(event.eventId);
    const ms = optionalTsToMs(event.eventTime) ?? first;
    const add = ({ at = ms, ...entry }: Omit<TimelineEntry, 'eventId' | 'atMs' | 'time' | 'details'> & { details?: string[]; at?: number }): TimelineEntry => {
      const full: TimelineEntry = { eventId, atMs: at - origin, time: new Date(at).toISOString(), details: [], ...entry };
      timeline.entries.push(full);
      return full;
    };
    const activityOf = (scheduledEventId: unknown) => activities.get(num(scheduledEventId)) ?? { type: '?', call: 0, input: [] };
    // In a node's own run the try says which node attempt; elsewhere the node id says which node.
    const activityName = (a: { type: string; call: number; nodeId?: string; round?: number; local?: boolean }) =>
      `${a.local ? 'local activity' : 'activity'} ${a.type}${a.round ? ` (try ${a.round})` : `${a.call > 1 ? ` #${a.call}` : ''}${a.nodeId ? ` (node ${a.nodeId})` : ''}`}`;
    const activityInfo = (a: ReturnType<typeof activityOf>, attempt?: number) => ({ type: a.type, call: a.call, attempt: attempt ?? a.attempt, maxAttempts: a.maxAttempts, nodeId: a.nodeId, round: a.round });
    const childOf = (initiatedEventId: unknown) => children.get(num(initiatedEventId)) ?? { workflowId: '?', workflowType: '?', label: '?' };
    const attachChild = (c: ReturnType<typeof childOf>, outcome: string) => {
      const sub = (c.runId && tree.children?.get(c.runId)) || tree.children?.get(c.workflowId);
      return { ...c, outcome, timeline: sub ? buildTimeline({ workflowId: c.workflowId, runId: c.runId, ...sub }, { origin }) : undefined };
    };

    if (event.workflowExecutionStartedEventAttributes) {
      const a = event.workflowExecutionStartedEventAttributes;
      timeline.workflowType = a.workflowType?.name ?? '?';
      timeline.startedAt = new Date(ms).toISOString();
      timeline.taskQueue = a.taskQueue?.name ?? undefined;
      timeline.parent = a.parentWorkflowExecution?.workflowId ?? undefined;
      timeline.input = argsSummary(valuesOf(a.input));
      timeline.runId ??= a.originalExecutionRunId ?? undefined;
      const details = [`input: ${timeline.input || '(none)'}`];
      if (timeline.parent) details.push(`parent: ${timeline.parent}`);
      const attrs = searchAttributesText(a.searchAttributes?.indexedFields as never);
      if (attrs) details.push(`search attributes: ${attrs}`);
      if (a.continuedExecutionRunId) details.push(`continued from run ${a.continuedExecutionRunId}`);
      if (num(a.attempt) > 1) details.push(`workflow attempt ${num(a.attempt)}`);
      add({ kind: 'workflow', text: `workflow ${timeline.workflowType} started on ${timeline.taskQueue ?? '?'}`, details });
    } else if (event.workflowTaskFailedEventAttributes) {
      const a = event.workflowTaskFailedEventAttributes;
      const error = failureSummary(a.failure);
      const cause = enumName(enums.WorkflowTaskFailedCause as never, a.cause, 'WORKFLOW_TASK_FAILED_CAUSE_');
      add({ kind: 'workflow-task', outcome: 'failed', text: `workflow task failed (${cause ?? 'unknown cause'}): the worker could not run the workflow code`, details: error ? [describeFailure(error)] : [], error });
    } else if (event.workflowTaskTimedOutEventAttributes) {
      add({ kind: 'workflow-task', outcome: 'timed-out', text: 'workflow task timed out: no worker finished it in time (a worker restart?)' });
    } else if (event.activityTaskScheduledEventAttributes) {
      const a = event.activityTaskScheduledEventAttributes;
      const type = a.activityType?.name ?? '?';
      if (ROUND_STARTS[timeline.workflowType] === type) round++;
      const call = (calls.get(type) ?? 0) + 1;
      calls.set(type, call);
      const input = valuesOf(a.input);
      const nodeId = (input[0] as { nodeId?: unknown } | undefined)?.nodeId;
      const info = { type, call, input, maxAttempts: num(a.retryPolicy?.maximumAttempts) || undefined, nodeId: typeof nodeId === 'string' ? nodeId : undefined, round: ROUND_STARTS[timeline.workflowType] ? round : undefined, scheduledMs: ms };
      activities.set(eventId, info);
      add({ kind: 'activity', text: `${activityName(info)} scheduled on ${a.taskQueue?.name ?? '?'}`, details: [`input: ${argsSummary(input) || '(none)'}`], activity: activityInfo(info) });
    } else if (event.activityTaskStartedEventAttributes) {
      const a = event.activityTaskStartedEventAttributes;
      const info = activityOf(a.scheduledEventId);
      info.attempt = num(a.attempt) || 1;
      const retry = info.attempt > 1;
      const last = failureSummary(a.lastFailure);
      const waited = ms - (info.scheduledMs ?? ms);
      add({
        kind: 'activity',
        // A first attempt picked up at once says nothing the scheduled line did not.
        quiet: !retry && waited < 1000,
        outcome: retry ? 'retry' : undefined,
        text: `${activityName(info)} started, ${attemptText(info.attempt, info.maxAttempts)}${retry ? ' (a retry)' : waited >= 1000 ? ` after waiting ${formatDuration(waited)} for a worker` : ''}`,
        details: [...(retry && last ? [`previous attempt failed: ${describeFailure(last)}`] : []), ...(a.identity ? [`worker ${a.identity}`] : [])],
        activity: activityInfo(info),
        error: retry ? last : undefined,
      });
    } else if (event.activityTaskCompletedEventAttributes) {
      const a = event.activityTaskCompletedEventAttributes;
      const info = activityOf(a.scheduledEventId);
      const result = valuesOf(a.result);
      const retried = (info.attempt ?? 1) > 1 ? ` on attempt ${info.attempt}` : '';
      add({ kind: 'activity', outcome: 'ok', text: `${activityName(info)} completed${retried}`, details: result[0] === undefined ? [] : [`result: ${argsSummary(result)}`], activity: activityInfo(info) });
    } else if (event.activityTaskFailedEventAttributes) {
      const a = event.activityTaskFailedEventAttributes;
      const info = activityOf(a.scheduledEventId);
      const error = failureSummary(a.failure, a.retryState)!;
      add({
        kind: 'activity',
        outcome: 'failed',
        text: `${activityName(info)} failed on ${attemptText(info.attempt ?? 1, info.maxAttempts)}${error.retryState ? `; ${error.retryState}` : ''}`,
        details: [describeFailure(error)],
        activity: activityInfo(info),
        error,
      });
    } else if (event.activityTaskTimedOutEventAttributes) {
      const a = event.activityTaskTimedOutEventAttributes;
      const info = activityOf(a.scheduledEventId);
      const error = failureSummary(a.failure, a.retryState)!;
      add({
        kind: 'activity',
        outcome: 'timed-out',
        text: `${activityName(info)} timed out on ${attemptText(info.attempt ?? 1, info.maxAttempts)}${error.retryState ? `; ${error.retryState}` : ''}`,
        details: [describeFailure(error)],
        activity: activityInfo(info),
        error,
      });
    } else if (event.activityTaskCancelRequestedEventAttributes) {
      const info = activityOf(event.activityTaskCancelRequestedEventAttributes.scheduledEventId);
      add({ kind: 'activity', text: `${activityName(info)}: cancellation requested`, activity: activityInfo(info) });
    } else if (event.activityTaskCanceledEventAttributes) {
      const info = activityOf(event.activityTaskCanceledEventAttributes.scheduledEventId);
      add({ kind: 'activity', outcome: 'cancelled', text: `${activityName(info)} cancelled`, activity: activityInfo(info) });
    } else if (event.startChildWorkflowExecutionInitiatedEventAttributes) {
      const a = event.startChildWorkflowExecutionInitiatedEventAttributes;
      const workflowId = a.workflowId ?? '?';
      children.set(eventId, { workflowId, workflowType: a.workflowType?.name ?? '?', label: childLabel(workflowId) });
    } else if (event.startChildWorkflowExecutionFailedEventAttributes) {
      const a = event.startChildWorkflowExecutionFailedEventAttributes;
      const c = childOf(a.initiatedEventId);
      const cause = enumName(enums.StartChildWorkflowExecutionFailedCause as never, a.cause, 'START_CHILD_WORKFLOW_EXECUTION_FAILED_CAUSE_');
      add({ kind: 'child', outcome: 'failed', text: `${childName(c)} could not start: ${cause}`, details: [c.workflowId], child: c });
    } else if (event.childWorkflowExecutionStartedEventAttributes) {
      const a = event.childWorkflowExecutionStartedEventAttributes;
      const c = childOf(a.initiatedEventId);
      c.runId = a.workflowExecution?.runId ?? undefined;
      add({ kind: 'child', text: `${childName(c)} started`, details: [`${c.workflowId}`], child: { ...c } });
    } else if (event.childWorkflowExecutionCompletedEventAttributes) {
      const a = event.childWorkflowExecutionCompletedEventAttributes;
      const c = childOf(a.initiatedEventId);
      const r = childResult(valuesOf(a.result)[0]);
      add({ kind: 'child', outcome: r.outcome, text: `${childName(c)} completed: ${r.text}`, details: r.details, child: attachChild(c, r.text) });
    } else if (event.childWorkflowExecutionFailedEventAttributes) {
      const a = event.childWorkflowExecutionFailedEventAttributes;
      const c = childOf(a.initiatedEventId);
      const error = failureSummary(a.failure, a.retryState)!;
      add({ kind: 'child', outcome: 'failed', text: `${childName(c)} failed`, details: [describeFailure(error)], child: attachChild(c, 'failed'), error });
    } else if (event.childWorkflowExecutionCanceledEventAttributes) {
      const c = childOf(event.childWorkflowExecutionCanceledEventAttributes.initiatedEventId);
      add({ kind: 'child', outcome: 'cancelled', text: `${childName(c)} cancelled`, child: attachChild(c, 'cancelled') });
    } else if (event.childWorkflowExecutionTimedOutEventAttributes) {
      const c = childOf(event.childWorkflowExecutionTimedOutEventAttributes.initiatedEventId);
      add({ kind: 'child', outcome: 'timed-out', text: `${childName(c)} timed out`, child: attachChild(c, 'timed out') });
    } else if (event.childWorkflowExecutionTerminatedEventAttributes) {
      const c = childOf(event.childWorkflowExecutionTerminatedEventAttributes.initiatedEventId);
      add({ kind: 'child', outcome: 'failed', text: `${childName(c)} terminated`, child: attachChild(c, 'terminated') });
    } else if (event.timerStartedEventAttributes) {
      const a = event.timerStartedEventAttributes;
      const timerMs = optionalTsToMs(a.startToFireTimeout as never);
      timers.set(eventId, { timerId: a.timerId ?? '?', ms: timerMs });
      add({ kind: 'timer', text: `timer ${a.timerId} started: fires in ${timerMs === undefined ? '?' : formatDuration(timerMs)}` });
    } else if (event.timerFiredEventAttributes) {
      const t = timers.get(num(event.timerFiredEventAttributes.startedEventId));
      add({ kind: 'timer', outcome: 'ok', text: `timer ${t?.timerId ?? event.timerFiredEventAttributes.timerId} fired` });
    } else if (event.timerCanceledEventAttributes) {
      add({ kind: 'timer', outcome: 'cancelled', text: `timer ${event.timerCanceledEventAttributes.timerId} cancelled` });
    } else if (event.workflowExecutionSignaledEventAttributes) {
      const a = event.workflowExecutionSignaledEventAttributes;
      const args = argsSummary(valuesOf(a.input));
      add({ kind: 'signal', text: `signal ${a.signalName} received${args ? ` ${args}` : ''}`, details: a.identity ? [`from ${a.identity}`] : [] });
    } else if (event.signalExternalWorkflowExecutionInitiatedEventAttributes) {
      const a = event.signalExternalWorkflowExecutionInitiatedEventAttributes;
      const to = a.workflowExecution?.workflowId ?? '?';
      signalsOut.set(eventId, { name: a.signalName ?? '?', to });
      const args = argsSummary(valuesOf(a.input));
      add({ kind: 'external', text: `signal ${a.signalName} sent to ${to}${args ? ` ${args}` : ''}` });
    } else if (event.signalExternalWorkflowExecutionFailedEventAttributes) {
      const a = event.signalExternalWorkflowExecutionFailedEventAttributes;
      const s = signalsOut.get(num(a.initiatedEventId));
      const cause = enumName(enums.SignalExternalWorkflowExecutionFailedCause as never, a.cause, 'SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED_CAUSE_');
      add({ kind: 'external', outcome: 'failed', text: `signal ${s?.name ?? '?'} to ${s?.to ?? a.workflowExecution?.workflowId ?? '?'} not delivered: ${cause}` });
    } else if (event.requestCancelExternalWorkflowExecutionInitiatedEventAttributes) {
      add({ kind: 'external', text: `cancellation requested of ${event.requestCancelExternalWorkflowExecutionInitiatedEventAttributes.workflowExecution?.workflowId ?? '?'}` });
    } else if (event.workflowExecutionUpdateAdmittedEventAttributes) {
      const a = event.workflowExecutionUpdateAdmittedEventAttributes;
      if (a.request?.meta?.updateId && a.request.input?.name) updates.set(a.request.meta.updateId, a.request.input.name);
    } else if (event.workflowExecutionUpdateAcceptedEventAttributes) {
      const a = event.workflowExecutionUpdateAcceptedEventAttributes;
      const name = a.acceptedRequest?.input?.name ?? '?';
      if (a.acceptedRequest?.meta?.updateId) updates.set(a.acceptedRequest.meta.updateId, name);
      const args = argsSummary(valuesOf(a.acceptedRequest?.input?.args));
      add({ kind: 'update', text: `update ${name} accepted${args ? ` ${args}` : ''}`, details: a.acceptedRequest?.meta?.identity ? [`from ${a.acceptedRequest.meta.identity}`] : [] });
    } else if (event.workflowExecutionUpdateCompletedEventAttributes) {
      const a = event.workflowExecutionUpdateCompletedEventAttributes;
      const name = updates.get(a.meta?.updateId ?? '') ?? '?';
      if (a.outcome?.failure) {
        const error = failureSummary(a.outcome.failure)!;
        add({ kind: 'update', outcome: 'failed', text: `update ${name} failed`, details: [describeFailure(error)], error });
      } else {
        const result = valuesOf(a.outcome?.success);
        add({ kind: 'update', outcome: 'ok', text: `update ${name} completed${result[0] === undefined ? '' : ` → ${argsSummary(result)}`}` });
      }
    } else if (event.upsertWorkflowSearchAttributesEventAttributes) {
      add({ kind: 'search-attributes', text: `search attributes set: ${searchAttributesText(event.upsertWorkflowSearchAttributesEventAttributes.searchAttributes?.indexedFields as never)}` });
    } else if (event.markerRecordedEventAttributes?.markerName === LOCAL_ACTIVITY_MARKER) {
      // A local activity leaves one marker when it ends (and one per failed attempt it retries
      // after a backoff timer): type, attempt and completion time in `data`, its result or failure.
      const a = event.markerRecordedEventAttributes;
      const data = (valueOf(a.details?.data?.payloads?.[0]) ?? {}) as LocalActivityData;
      const type = data.activity_type ?? '?';
      const first = data.seq === undefined || !localSeqs.has(data.seq);
      if (data.seq !== undefined) localSeqs.add(data.seq);
      if (first && ROUND_STARTS[timeline.workflowType] === type) round++;
      const call = (calls.get(type) ?? 0) + (first ? 1 : 0);
      calls.set(type, call);
      const attempt = num(data.attempt) || 1;
      const info = { type, call, attempt, round: ROUND_STARTS[timeline.workflowType] ? round : undefined, local: true };
      const at = optionalTsToMs(data.complete_time) ?? ms;
      const backoff = optionalTsToMs(data.backoff ?? undefined);
      const activity = { type, call, attempt, round: info.round, local: true };
      if (a.failure) {
        const error = failureSummary(a.failure)!;
        if (backoff !== undefined) {
          add({ at, kind: 'activity', outcome: 'retry', text: `${activityName(info)} failed on attempt ${attempt}; retrying in ${formatDuration(backoff)}`, details: [describeFailure(error)], activity, error });
        } else {
          add({ at, kind: 'activity', outcome: 'failed', text: `${activityName(info)} failed after ${attempt} attempt${attempt === 1 ? '' : 's'}`, details: [describeFailure(error)], activity, error });
        }
      } else {
        const result = valuesOf(a.details?.result);
        add({
          at,
          kind: 'activity',
          outcome: 'ok',
          text: `${activityName(info)} completed${attempt > 1 ? ` on attempt ${attempt}` : ''}`,
          details: result[0] === undefined ? [] : [`result: ${argsSummary(result)}`],
          activity,
        });
      }
    } else if (event.markerRecordedEventAttributes) {
      const a = event.markerRecordedEventAttributes;
      const patch = a.markerName === 'core_patch' ? valueOf(a.details?.patch_data?.payloads?.[0]) : undefined;
      add({ kind: 'marker', text: patch ? `patch marker ${summarize((patch as { id?: string }).id ?? patch)}` : `marker ${a.markerName}` });
    } else if (event.workflowExecutionCancelRequestedEventAttributes) {
      const a = event.workflowExecutionCancelRequestedEventAttributes;
      add({ kind: 'workflow', text: `cancellation of this run requested${a.cause ? `: ${a.cause}` : ''}`, details: a.identity ? [`by ${a.identity}`] : [] });
    } else if (event.workflowExecutionCompletedEventAttributes) {
      const result = valuesOf(event.workflowExecutionCompletedEventAttributes.result);
      timeline.status = 'completed';
      timeline.result = result[0] === undefined ? undefined : argsSummary(result);
      add({ kind: 'workflow', outcome: 'ok', text: `workflow ${timeline.workflowType} completed`, details: timeline.result ? [`result: ${timeline.result}`] : [] });
    } else if (event.workflowExecutionFailedEventAttributes) {
      const a = event.workflowExecutionFailedEventAttributes;
      timeline.status = 'failed';
      timeline.failure = failureSummary(a.failure, a.retryState);
      add({ kind: 'workflow', outcome: 'failed', text: `workflow ${timeline.workflowType} failed`, details: timeline.failure ? [describeFailure(timeline.failure)] : [], error: timeline.failure });
    } else if (event.workflowExecutionTimedOutEventAttributes) {
      timeline.status = 'timed-out';
      timeline.failure = { type: 'timeout', message: 'the run exceeded its execution or run timeout', causes: [] };
      add({ kind: 'workflow', outcome: 'timed-out', text: `workflow ${timeline.workflowType} timed out`, error: timeline.failure });
    } else if (event.workflowExecutionCanceledEventAttributes) {
      timeline.status = 'cancelled';
      add({ kind: 'workflow', outcome: 'cancelled', text: `workflow ${timeline.workflowType} cancelled` });
    } else if (event.workflowExecutionTerminatedEventAttributes) {
      const a = event.workflowExecutionTerminatedEventAttributes;
      timeline.status = 'terminated';
      timeline.failure = { type: 'terminated', message: a.reason || 'no reason given', causes: [] };
      add({ kind: 'workflow', outcome: 'failed', text: `workflow ${timeline.workflowType} terminated: ${a.reason || 'no reason given'}`, details: a.identity ? [`by ${a.identity}`] : [], error: timeline.failure });
    } else if (event.workflowExecutionContinuedAsNewEventAttributes) {
      const a = event.workflowExecutionContinuedAsNewEventAttributes;
      timeline.status = 'continued-as-new';
      add({ kind: 'workflow', outcome: 'ok', text: `workflow ${timeline.workflowType} continued as new: run ${a.newExecutionRunId}`, details: ['the history goes on in the new run (kubedos history shows the latest run; --run-id picks one)'] });
    }
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

// ---------------------------------------------------------------------------------------------
// rendering

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
