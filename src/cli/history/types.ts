/** What reading a history yields: a timeline of entries, with the child runs shown inside it. */
import type { temporal } from '@temporalio/proto';

export type History = temporal.api.history.v1.IHistory;

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
