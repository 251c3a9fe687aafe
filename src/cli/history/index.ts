/**
 * A run's event history as a person reads it: what started, which activity ran on which node,
 * which attempt failed with which error, what was retried, what the run ended with. `kubedos
 * history` fetches, decodes and prints it (src/cli/commands/runs.ts).
 *
 * By job: ./decode.ts (payloads through the codecs; values, times and failures out of events),
 * ./events.ts (one handler per event type), ./timeline.ts (the reading loop, what went wrong),
 * ./render.ts (the terminal text), ./summarize.ts (short words for values and durations).
 */
export { decodeHistoryPayloads, failureSummary, isEncrypted } from './decode';
export { renderTimeline } from './render';
export { describeFailure, formatDuration, formatOffset, summarize } from './summarize';
export { buildTimeline, childRuns } from './timeline';
export type { EntryKind, EntryOutcome, FailureSummary, History, HistoryTree, RunStatus, Timeline, TimelineEntry } from './types';
