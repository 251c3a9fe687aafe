/**
 * One handler per history event type: what each event adds to the timeline and what it leaves
 * for later events (an activity's scheduled input, a child's workflow id, a timer's duration…).
 *
 * The table is keyed by the event's attributes field, which names its type
 * (`timerFiredEventAttributes` is EVENT_TYPE_TIMER_FIRED): a history read from JSON or made by
 * hand need not carry `eventType`, but always has its attributes. Event types not in the table
 * add nothing.
 */
import { enums, failureSummary, optionalTsToMs, num, valueOf, valuesOf, enumName, type HistoryEvent, type Payload } from './decode';
import { argsSummary, attemptText, describeFailure, formatDuration, summarize } from './summarize';
import type { EntryOutcome, HistoryTree, Timeline, TimelineEntry } from './types';

/**
 * Activity types that begin a fresh try of a workflow's whole job, by workflow type: each
 * createNode of fleetNode is a new node after the previous one was destroyed.
 */
const ROUND_STARTS: Record<string, string> = { fleetNode: 'createNode' };

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

/** An activity call, from its scheduled event on. */
interface ActivityCall {
  type: string;
  call: number;
  maxAttempts?: number;
  nodeId?: string;
  round?: number;
  attempt?: number;
  scheduledMs?: number;
  local?: boolean;
  input: unknown[];
}

/** A child run, from its initiated event on. */
interface ChildRun {
  workflowId: string;
  workflowType: string;
  label: string;
  runId?: string;
}

/** What reading one run keeps from event to event. */
export interface RunState {
  tree: HistoryTree;
  timeline: Timeline;
  /** Reads a child run's history into its timeline, on this run's clock. */
  nested: (tree: HistoryTree) => Timeline;
  activities: Map<number, ActivityCall>;
  /** Calls so far per activity type. */
  calls: Map<string, number>;
  children: Map<number, ChildRun>;
  timers: Map<number, { timerId: string; ms?: number }>;
  /** Update id → update name. */
  updates: Map<string, string>;
  signalsOut: Map<number, { name: string; to: string }>;
  /** Local activities seen (by sequence number): later markers of one are its retries. */
  localSeqs: Set<number>;
  /** The try of the run's whole job (see ROUND_STARTS). */
  round: number;
}

/** A new timeline entry: eventId and times are the event's (`at` overrides when it happened). */
export type NewEntry = Omit<TimelineEntry, 'eventId' | 'atMs' | 'time' | 'details'> & { details?: string[]; at?: number };

/** The event being read: its id, its time, and how to add entries for it. */
export interface EventContext {
  run: RunState;
  eventId: number;
  /** When the event happened (ms since the epoch). */
  ms: number;
  add: (entry: NewEntry) => TimelineEntry;
}

/** The attributes fields of a history event, one per event type. */
type Attributes = { [K in keyof HistoryEvent as K extends `${string}EventAttributes` ? K : never]-?: NonNullable<HistoryEvent[K]> };
export type EventType = keyof Attributes;
type Handler<K extends EventType> = (a: Attributes[K], ev: EventContext) => void;

const activityOf = (run: RunState, scheduledEventId: unknown): ActivityCall => run.activities.get(num(scheduledEventId)) ?? { type: '?', call: 0, input: [] };

/** In a node's own run the try says which node attempt; elsewhere the node id says which node. */
const activityName = (a: { type: string; call: number; nodeId?: string; round?: number; local?: boolean }) =>
  `${a.local ? 'local activity' : 'activity'} ${a.type}${a.round ? ` (try ${a.round})` : `${a.call > 1 ? ` #${a.call}` : ''}${a.nodeId ? ` (node ${a.nodeId})` : ''}`}`;

const activityInfo = (a: ActivityCall, attempt?: number) => ({ type: a.type, call: a.call, attempt: attempt ?? a.attempt, maxAttempts: a.maxAttempts, nodeId: a.nodeId, round: a.round });

const childOf = (run: RunState, initiatedEventId: unknown): ChildRun => run.children.get(num(initiatedEventId)) ?? { workflowId: '?', workflowType: '?', label: '?' };

/** The child as the entry that closes it shows it: how it ended, and its own timeline when its history was given. */
function attachChild(run: RunState, c: ChildRun, outcome: string) {
  const sub = (c.runId && run.tree.children?.get(c.runId)) || run.tree.children?.get(c.workflowId);
  return { ...c, outcome, timeline: sub ? run.nested({ workflowId: c.workflowId, runId: c.runId, ...sub }) : undefined };
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

/** An activity attempt that ended badly (failed or timed out), with why it is or is not retried. */
function activityEnded(how: 'failed' | 'timed out', outcome: 'failed' | 'timed-out') {
  return (a: { scheduledEventId?: unknown; failure?: Parameters<typeof failureSummary>[0]; retryState?: unknown }, { run, add }: EventContext) => {
    const info = activityOf(run, a.scheduledEventId);
    const error = failureSummary(a.failure, a.retryState)!;
    add({
      kind: 'activity',
      outcome,
      text: `${activityName(info)} ${how} on ${attemptText(info.attempt ?? 1, info.maxAttempts)}${error.retryState ? `; ${error.retryState}` : ''}`,
      details: [describeFailure(error)],
      activity: activityInfo(info),
      error,
    });
  };
}

/** A local activity leaves one marker when it ends (and one per failed attempt it retries after a backoff timer). */
function localActivityMarker(a: Attributes['markerRecordedEventAttributes'], { run, ms, add }: EventContext): void {
  // Type, attempt and completion time are in `data`; its result or failure beside them.
  const data = (valueOf(a.details?.data?.payloads?.[0]) ?? {}) as LocalActivityData;
  const type = data.activity_type ?? '?';
  const newCall = data.seq === undefined || !run.localSeqs.has(data.seq);
  if (data.seq !== undefined) run.localSeqs.add(data.seq);
  if (newCall && ROUND_STARTS[run.timeline.workflowType] === type) run.round++;
  const call = (run.calls.get(type) ?? 0) + (newCall ? 1 : 0);
  run.calls.set(type, call);
  const attempt = num(data.attempt) || 1;
  const info = { type, call, attempt, round: ROUND_STARTS[run.timeline.workflowType] ? run.round : undefined, local: true };
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
}

export const EVENT_HANDLERS: { [K in EventType]?: Handler<K> } = {
  // --- the run itself
  workflowExecutionStartedEventAttributes: (a, { run: { timeline }, ms, add }) => {
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
  },
  workflowExecutionCancelRequestedEventAttributes: (a, { add }) => {
    add({ kind: 'workflow', text: `cancellation of this run requested${a.cause ? `: ${a.cause}` : ''}`, details: a.identity ? [`by ${a.identity}`] : [] });
  },
  workflowExecutionCompletedEventAttributes: (a, { run: { timeline }, add }) => {
    const result = valuesOf(a.result);
    timeline.status = 'completed';
    timeline.result = result[0] === undefined ? undefined : argsSummary(result);
    add({ kind: 'workflow', outcome: 'ok', text: `workflow ${timeline.workflowType} completed`, details: timeline.result ? [`result: ${timeline.result}`] : [] });
  },
  workflowExecutionFailedEventAttributes: (a, { run: { timeline }, add }) => {
    timeline.status = 'failed';
    timeline.failure = failureSummary(a.failure, a.retryState);
    add({ kind: 'workflow', outcome: 'failed', text: `workflow ${timeline.workflowType} failed`, details: timeline.failure ? [describeFailure(timeline.failure)] : [], error: timeline.failure });
  },
  workflowExecutionTimedOutEventAttributes: (_a, { run: { timeline }, add }) => {
    timeline.status = 'timed-out';
    timeline.failure = { type: 'timeout', message: 'the run exceeded its execution or run timeout', causes: [] };
    add({ kind: 'workflow', outcome: 'timed-out', text: `workflow ${timeline.workflowType} timed out`, error: timeline.failure });
  },
  workflowExecutionCanceledEventAttributes: (_a, { run: { timeline }, add }) => {
    timeline.status = 'cancelled';
    add({ kind: 'workflow', outcome: 'cancelled', text: `workflow ${timeline.workflowType} cancelled` });
  },
  workflowExecutionTerminatedEventAttributes: (a, { run: { timeline }, add }) => {
    timeline.status = 'terminated';
    timeline.failure = { type: 'terminated', message: a.reason || 'no reason given', causes: [] };
    add({ kind: 'workflow', outcome: 'failed', text: `workflow ${timeline.workflowType} terminated: ${a.reason || 'no reason given'}`, details: a.identity ? [`by ${a.identity}`] : [], error: timeline.failure });
  },
  workflowExecutionContinuedAsNewEventAttributes: (a, { run: { timeline }, add }) => {
    timeline.status = 'continued-as-new';
    add({ kind: 'workflow', outcome: 'ok', text: `workflow ${timeline.workflowType} continued as new: run ${a.newExecutionRunId}`, details: ['the history goes on in the new run (kubedos history shows the latest run; --run-id picks one)'] });
  },

  // --- workflow tasks
  workflowTaskFailedEventAttributes: (a, { add }) => {
    const error = failureSummary(a.failure);
    const cause = enumName(enums.WorkflowTaskFailedCause as never, a.cause, 'WORKFLOW_TASK_FAILED_CAUSE_');
    add({ kind: 'workflow-task', outcome: 'failed', text: `workflow task failed (${cause ?? 'unknown cause'}): the worker could not run the workflow code`, details: error ? [describeFailure(error)] : [], error });
  },
  workflowTaskTimedOutEventAttributes: (_a, { add }) => {
    add({ kind: 'workflow-task', outcome: 'timed-out', text: 'workflow task timed out: no worker finished it in time (a worker restart?)' });
  },

  // --- activities
  activityTaskScheduledEventAttributes: (a, { run, eventId, ms, add }) => {
    const type = a.activityType?.name ?? '?';
    if (ROUND_STARTS[run.timeline.workflowType] === type) run.round++;
    const call = (run.calls.get(type) ?? 0) + 1;
    run.calls.set(type, call);
    const input = valuesOf(a.input);
    const nodeId = (input[0] as { nodeId?: unknown } | undefined)?.nodeId;
    const info: ActivityCall = {
      type,
      call,
      input,
      maxAttempts: num(a.retryPolicy?.maximumAttempts) || undefined,
      nodeId: typeof nodeId === 'string' ? nodeId : undefined,
      round: ROUND_STARTS[run.timeline.workflowType] ? run.round : undefined,
      scheduledMs: ms,
    };
    run.activities.set(eventId, info);
    add({ kind: 'activity', text: `${activityName(info)} scheduled on ${a.taskQueue?.name ?? '?'}`, details: [`input: ${argsSummary(input) || '(none)'}`], activity: activityInfo(info) });
  },
  activityTaskStartedEventAttributes: (a, { run, ms, add }) => {
    const info = activityOf(run, a.scheduledEventId);
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
  },
  activityTaskCompletedEventAttributes: (a, { run, add }) => {
    const info = activityOf(run, a.scheduledEventId);
    const result = valuesOf(a.result);
    const retried = (info.attempt ?? 1) > 1 ? ` on attempt ${info.attempt}` : '';
    add({ kind: 'activity', outcome: 'ok', text: `${activityName(info)} completed${retried}`, details: result[0] === undefined ? [] : [`result: ${argsSummary(result)}`], activity: activityInfo(info) });
  },
  activityTaskFailedEventAttributes: activityEnded('failed', 'failed'),
  activityTaskTimedOutEventAttributes: activityEnded('timed out', 'timed-out'),
  activityTaskCancelRequestedEventAttributes: (a, { run, add }) => {
    const info = activityOf(run, a.scheduledEventId);
    add({ kind: 'activity', text: `${activityName(info)}: cancellation requested`, activity: activityInfo(info) });
  },
  activityTaskCanceledEventAttributes: (a, { run, add }) => {
    const info = activityOf(run, a.scheduledEventId);
    add({ kind: 'activity', outcome: 'cancelled', text: `${activityName(info)} cancelled`, activity: activityInfo(info) });
  },

  // --- child workflows
  startChildWorkflowExecutionInitiatedEventAttributes: (a, { run, eventId }) => {
    const workflowId = a.workflowId ?? '?';
    run.children.set(eventId, { workflowId, workflowType: a.workflowType?.name ?? '?', label: childLabel(workflowId) });
  },
  startChildWorkflowExecutionFailedEventAttributes: (a, { run, add }) => {
    const c = childOf(run, a.initiatedEventId);
    const cause = enumName(enums.StartChildWorkflowExecutionFailedCause as never, a.cause, 'START_CHILD_WORKFLOW_EXECUTION_FAILED_CAUSE_');
    add({ kind: 'child', outcome: 'failed', text: `${childName(c)} could not start: ${cause}`, details: [c.workflowId], child: c });
  },
  childWorkflowExecutionStartedEventAttributes: (a, { run, add }) => {
    const c = childOf(run, a.initiatedEventId);
    c.runId = a.workflowExecution?.runId ?? undefined;
    add({ kind: 'child', text: `${childName(c)} started`, details: [`${c.workflowId}`], child: { ...c } });
  },
  childWorkflowExecutionCompletedEventAttributes: (a, { run, add }) => {
    const c = childOf(run, a.initiatedEventId);
    const r = childResult(valuesOf(a.result)[0]);
    add({ kind: 'child', outcome: r.outcome, text: `${childName(c)} completed: ${r.text}`, details: r.details, child: attachChild(run, c, r.text) });
  },
  childWorkflowExecutionFailedEventAttributes: (a, { run, add }) => {
    const c = childOf(run, a.initiatedEventId);
    const error = failureSummary(a.failure, a.retryState)!;
    add({ kind: 'child', outcome: 'failed', text: `${childName(c)} failed`, details: [describeFailure(error)], child: attachChild(run, c, 'failed'), error });
  },
  childWorkflowExecutionCanceledEventAttributes: (a, { run, add }) => {
    const c = childOf(run, a.initiatedEventId);
    add({ kind: 'child', outcome: 'cancelled', text: `${childName(c)} cancelled`, child: attachChild(run, c, 'cancelled') });
  },
  childWorkflowExecutionTimedOutEventAttributes: (a, { run, add }) => {
    const c = childOf(run, a.initiatedEventId);
    add({ kind: 'child', outcome: 'timed-out', text: `${childName(c)} timed out`, child: attachChild(run, c, 'timed out') });
  },
  childWorkflowExecutionTerminatedEventAttributes: (a, { run, add }) => {
    const c = childOf(run, a.initiatedEventId);
    add({ kind: 'child', outcome: 'failed', text: `${childName(c)} terminated`, child: attachChild(run, c, 'terminated') });
  },

  // --- timers
  timerStartedEventAttributes: (a, { run, eventId, add }) => {
    const timerMs = optionalTsToMs(a.startToFireTimeout as never);
    run.timers.set(eventId, { timerId: a.timerId ?? '?', ms: timerMs });
    add({ kind: 'timer', text: `timer ${a.timerId} started: fires in ${timerMs === undefined ? '?' : formatDuration(timerMs)}` });
  },
  timerFiredEventAttributes: (a, { run, add }) => {
    const t = run.timers.get(num(a.startedEventId));
    add({ kind: 'timer', outcome: 'ok', text: `timer ${t?.timerId ?? a.timerId} fired` });
  },
  timerCanceledEventAttributes: (a, { add }) => {
    add({ kind: 'timer', outcome: 'cancelled', text: `timer ${a.timerId} cancelled` });
  },

  // --- signals, cancellation of others, updates
  workflowExecutionSignaledEventAttributes: (a, { add }) => {
    const args = argsSummary(valuesOf(a.input));
    add({ kind: 'signal', text: `signal ${a.signalName} received${args ? ` ${args}` : ''}`, details: a.identity ? [`from ${a.identity}`] : [] });
  },
  signalExternalWorkflowExecutionInitiatedEventAttributes: (a, { run, eventId, add }) => {
    const to = a.workflowExecution?.workflowId ?? '?';
    run.signalsOut.set(eventId, { name: a.signalName ?? '?', to });
    const args = argsSummary(valuesOf(a.input));
    add({ kind: 'external', text: `signal ${a.signalName} sent to ${to}${args ? ` ${args}` : ''}` });
  },
  signalExternalWorkflowExecutionFailedEventAttributes: (a, { run, add }) => {
    const s = run.signalsOut.get(num(a.initiatedEventId));
    const cause = enumName(enums.SignalExternalWorkflowExecutionFailedCause as never, a.cause, 'SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED_CAUSE_');
    add({ kind: 'external', outcome: 'failed', text: `signal ${s?.name ?? '?'} to ${s?.to ?? a.workflowExecution?.workflowId ?? '?'} not delivered: ${cause}` });
  },
  requestCancelExternalWorkflowExecutionInitiatedEventAttributes: (a, { add }) => {
    add({ kind: 'external', text: `cancellation requested of ${a.workflowExecution?.workflowId ?? '?'}` });
  },
  workflowExecutionUpdateAdmittedEventAttributes: (a, { run }) => {
    if (a.request?.meta?.updateId && a.request.input?.name) run.updates.set(a.request.meta.updateId, a.request.input.name);
  },
  workflowExecutionUpdateAcceptedEventAttributes: (a, { run, add }) => {
    const name = a.acceptedRequest?.input?.name ?? '?';
    if (a.acceptedRequest?.meta?.updateId) run.updates.set(a.acceptedRequest.meta.updateId, name);
    const args = argsSummary(valuesOf(a.acceptedRequest?.input?.args));
    add({ kind: 'update', text: `update ${name} accepted${args ? ` ${args}` : ''}`, details: a.acceptedRequest?.meta?.identity ? [`from ${a.acceptedRequest.meta.identity}`] : [] });
  },
  workflowExecutionUpdateCompletedEventAttributes: (a, { run, add }) => {
    const name = run.updates.get(a.meta?.updateId ?? '') ?? '?';
    if (a.outcome?.failure) {
      const error = failureSummary(a.outcome.failure)!;
      add({ kind: 'update', outcome: 'failed', text: `update ${name} failed`, details: [describeFailure(error)], error });
    } else {
      const result = valuesOf(a.outcome?.success);
      add({ kind: 'update', outcome: 'ok', text: `update ${name} completed${result[0] === undefined ? '' : ` → ${argsSummary(result)}`}` });
    }
  },

  // --- search attributes and markers
  upsertWorkflowSearchAttributesEventAttributes: (a, { add }) => {
    add({ kind: 'search-attributes', text: `search attributes set: ${searchAttributesText(a.searchAttributes?.indexedFields as never)}` });
  },
  markerRecordedEventAttributes: (a, ev) => {
    if (a.markerName === LOCAL_ACTIVITY_MARKER) return localActivityMarker(a, ev);
    const patch = a.markerName === 'core_patch' ? valueOf(a.details?.patch_data?.payloads?.[0]) : undefined;
    ev.add({ kind: 'marker', text: patch ? `patch marker ${summarize((patch as { id?: string }).id ?? patch)}` : `marker ${a.markerName}` });
  },
};
