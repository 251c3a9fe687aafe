/**
 * `kubedos runs` lists runs through visibility queries on the KubeDos search attributes (fleet,
 * image, target) and the execution status; `kubedos history RUN` renders one run's event
 * timeline, payloads decrypted through the client's data converter, with the histories of the
 * child runs that failed shown inside it (which node, which step, which try, which error).
 */
import { WorkflowNotFoundError, type Client, type WorkflowExecutionInfo } from '@temporalio/client';
import type { Command } from 'commander';
import { temporal } from '@temporalio/proto';
import { FLEET, IMAGE, PHASE, TARGET } from '../../../workflows/search';
import { ConfigError } from '../../errors';
import { connectClient } from '../../temporal/client';
import { workflowUiLink } from '../../temporal/connection';
import { action, type GlobalOptions } from '../command';
import { EXIT, type ExitCode } from '../exit-codes';
import { buildTimeline, childRuns, decodeHistoryPayloads, describeFailure, failureSummary, formatDuration, renderTimeline, type History, type HistoryTree } from '../history';
import { colors as pc, note, printJson, renderTable } from '../output';

export interface RunsOptions extends GlobalOptions {
  fleet?: string;
  image?: string;
  target?: string;
  type?: string;
  failed?: boolean;
  running?: boolean;
  limit?: string;
}

/** A run as `kubedos runs` reports it. */
export interface RunRow {
  type: string;
  workflowId: string;
  runId: string;
  status: string;
  startTime: string;
  closeTime?: string;
  durationMs?: number;
  fleet?: string;
  image?: string;
  target?: string;
  phase?: string;
  /** The failure the run ended with (failed, timed out, terminated). */
  failure?: string;
}

/** Most runs the listing reads before sorting (visibility has no ORDER BY on SQL stores). */
const SCAN_LIMIT = 2000;

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** The visibility query for the options; values are checked, so nothing is ever spliced in raw. */
export function runsQuery(opts: Pick<RunsOptions, 'fleet' | 'image' | 'target' | 'type' | 'failed' | 'running'>): string {
  const clauses: string[] = [];
  for (const [option, key, value] of [
    ['--fleet', FLEET.name, opts.fleet],
    ['--image', IMAGE.name, opts.image],
    ['--target', TARGET.name, opts.target],
    ['--type', 'WorkflowType', opts.type],
  ] as const) {
    if (value === undefined) continue;
    if (!NAME.test(value)) throw new ConfigError(`${option}: "${value}" is not a name`, 'names are letters, digits, dots, dashes and underscores');
    clauses.push(`${key} = '${value}'`);
  }
  const statuses = [...(opts.failed ? ['Failed', 'TimedOut'] : []), ...(opts.running ? ['Running'] : [])];
  if (statuses.length) clauses.push(`(${statuses.map((s) => `ExecutionStatus = '${s}'`).join(' OR ')})`);
  return clauses.join(' AND ');
}

function parseLimit(text: string | undefined): number {
  if (text === undefined) return 20;
  if (!/^[1-9]\d*$/.test(text)) throw new ConfigError(`--limit: expected a positive whole number, got "${text}"`);
  return Number(text);
}

const STATUS_NAMES: Record<string, string> = {
  RUNNING: 'running',
  COMPLETED: 'completed',
  FAILED: 'failed',
  CANCELLED: 'cancelled',
  TERMINATED: 'terminated',
  CONTINUED_AS_NEW: 'continued-as-new',
  TIMED_OUT: 'timed-out',
};

/** The failure a closed run ended with, read from its close event alone. */
async function closeFailure(client: Client, info: WorkflowExecutionInfo): Promise<string | undefined> {
  const response = await client.workflowService.getWorkflowExecutionHistory({
    namespace: client.options.namespace,
    execution: { workflowId: info.workflowId, runId: info.runId },
    historyEventFilterType: temporal.api.enums.v1.HistoryEventFilterType.HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT,
  });
  const event = response.history?.events?.[0];
  const failed = event?.workflowExecutionFailedEventAttributes;
  if (failed) return failed.failure ? describeFailure(failureSummary(failed.failure)!) : 'failed';
  if (event?.workflowExecutionTimedOutEventAttributes) return 'timed out';
  const terminated = event?.workflowExecutionTerminatedEventAttributes;
  if (terminated) return `terminated: ${terminated.reason || 'no reason given'}${terminated.identity ? ` (by ${terminated.identity})` : ''}`;
  return undefined;
}

function keyword(info: WorkflowExecutionInfo, key: typeof FLEET): string | undefined {
  const value = info.typedSearchAttributes.get(key);
  return typeof value === 'string' ? value : undefined;
}

export async function listRuns(client: Client, opts: RunsOptions): Promise<{ query: string; runs: RunRow[]; truncated: boolean }> {
  const query = runsQuery(opts);
  const limit = parseLimit(opts.limit);
  const infos: WorkflowExecutionInfo[] = [];
  let truncated = false;
  for await (const info of client.workflow.list({ query: query || undefined })) {
    if (infos.length >= SCAN_LIMIT) {
      truncated = true;
      break;
    }
    infos.push(info);
  }
  infos.sort((a, b) => b.startTime.getTime() - a.startTime.getTime());
  const newest = infos.slice(0, limit);
  const runs = await Promise.all(
    newest.map(async (info): Promise<RunRow> => {
      const status = STATUS_NAMES[info.status.name] ?? info.status.name.toLowerCase();
      const failure = ['failed', 'timed-out', 'terminated'].includes(status) ? await closeFailure(client, info).catch((err: Error) => `(close event unreadable: ${err.message})`) : undefined;
      return {
        type: info.type,
        workflowId: info.workflowId,
        runId: info.runId,
        status,
        startTime: info.startTime.toISOString(),
        closeTime: info.closeTime?.toISOString(),
        durationMs: info.closeTime ? info.closeTime.getTime() - info.startTime.getTime() : undefined,
        fleet: keyword(info, FLEET),
        image: keyword(info, IMAGE),
        target: keyword(info, TARGET),
        phase: keyword(info, PHASE),
        failure,
      };
    }),
  );
  return { query, runs, truncated };
}

const when = (iso: string) => iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z');

function renderRuns(runs: RunRow[]): string {
  const colour = (status: string) => (status === 'completed' ? pc.green(status) : status === 'running' ? pc.cyan(status) : ['failed', 'timed-out', 'terminated'].includes(status) ? pc.red(status) : status);
  return renderTable(
    ['STARTED', 'TYPE', 'WORKFLOW ID', 'STATUS', 'DURATION', 'DETAIL'],
    runs.map((r) => [
      when(r.startTime),
      r.type,
      r.workflowId,
      colour(r.status),
      r.durationMs === undefined ? '' : formatDuration(r.durationMs),
      r.failure ?? (r.phase && r.status === 'running' ? `phase ${r.phase}` : ''),
    ]),
  );
}

async function runs(opts: RunsOptions): Promise<ExitCode> {
  // Checked before connecting: a bad option is a usage error, whatever the server's state.
  runsQuery(opts);
  parseLimit(opts.limit);
  const { client, close } = await connectClient();
  try {
    const { query, runs: rows, truncated } = await listRuns(client, opts);
    if (opts.json) {
      printJson({ query, runs: rows, truncated });
      return EXIT.ok;
    }
    if (truncated) note(`read the first ${SCAN_LIMIT} matching runs only; narrow the query (--fleet, --type, --failed) to see older ones`);
    process.stdout.write(rows.length ? `${renderRuns(rows)}\n` : `no runs match${query ? ` ${query}` : ''}\n`);
    return EXIT.ok;
  } finally {
    await close();
  }
}

export interface HistoryOptions extends GlobalOptions {
  runId?: string;
  children?: string;
  verbose?: boolean;
}

const CHILD_MODES = ['failed', 'all', 'none'] as const;
/** How deep child runs are followed, and how many are fetched in all. */
const MAX_DEPTH = 3;
const MAX_CHILDREN = 50;

/**
 * A run's history with the child runs to show inside it, payloads decoded. Children are fetched
 * breadth-first up to MAX_DEPTH levels and MAX_CHILDREN histories.
 */
export async function loadHistoryTree(
  client: Client,
  workflowId: string,
  runId: string | undefined,
  which: (typeof CHILD_MODES)[number],
): Promise<{ tree: HistoryTree; undecodable: number; errors: Error[]; skippedChildren: number }> {
  const codecs = client.options.loadedDataConverter.payloadCodecs;
  let undecodable = 0;
  const errors: Error[] = [];
  let budget = MAX_CHILDREN;
  let skippedChildren = 0;
  const load = async (id: string, run: string | undefined): Promise<HistoryTree> => {
    const history: History = await client.workflow.getHandle(id, run).fetchHistory();
    const decoded = await decodeHistoryPayloads(history, codecs);
    undecodable += decoded.undecodable;
    errors.push(...decoded.errors);
    return { history, workflowId: id, runId: run };
  };
  const root = await load(workflowId, runId);
  let level: HistoryTree[] = [root];
  for (let depth = 0; depth < MAX_DEPTH && which !== 'none' && level.length; depth++) {
    const next: HistoryTree[] = [];
    for (const node of level) {
      const refs = childRuns(buildTimeline(node), which);
      const children = new Map<string, HistoryTree>();
      for (const ref of refs) {
        if (budget <= 0) {
          skippedChildren++;
          continue;
        }
        budget--;
        const child = await load(ref.workflowId, ref.runId).catch(() => undefined); // a child history may have been deleted by retention
        if (!child) continue;
        children.set(ref.runId ?? ref.workflowId, child);
        next.push(child);
      }
      (node as { children?: Map<string, HistoryTree> }).children = children;
    }
    level = next;
  }
  return { tree: root, undecodable, errors, skippedChildren };
}

async function history(ref: string, opts: HistoryOptions): Promise<ExitCode> {
  const which = (opts.children ?? 'failed') as (typeof CHILD_MODES)[number];
  if (!CHILD_MODES.includes(which)) throw new ConfigError(`--children: expected one of ${CHILD_MODES.join(', ')}, got "${opts.children}"`);
  const { client, settings, close } = await connectClient();
  try {
    let loaded: Awaited<ReturnType<typeof loadHistoryTree>>;
    try {
      loaded = await loadHistoryTree(client, ref, opts.runId, which);
    } catch (err) {
      // fetchHistory reports an unknown id as the bare gRPC NOT_FOUND (code 5).
      if (err instanceof WorkflowNotFoundError || (err as { code?: number }).code === 5) {
        throw new ConfigError(`no run with workflow id "${ref}"${opts.runId ? ` and run id ${opts.runId}` : ''}`, '`kubedos runs` lists runs with their workflow ids (e.g. fleet/PLATFORM/FLEET/rollout/g2)', { cause: err });
      }
      throw err;
    }
    const timeline = buildTimeline(loaded.tree);
    if (loaded.undecodable) {
      note(
        `${pc.yellow('warning')}: ${loaded.undecodable} payload(s) could not be decrypted and show as ‹encrypted›: ${loaded.errors[0]?.message ?? ''}\n  ${pc.cyan('hint:')} ${(loaded.errors[0] as { hint?: string } | undefined)?.hint ?? 'give this process the key the run was written with (KUBEDOS_CODEC_KEY or KUBEDOS_CODEC_KEY_FILE)'}`,
      );
    }
    if (loaded.skippedChildren) note(`${loaded.skippedChildren} further child run(s) not shown (at most ${MAX_CHILDREN}); \`kubedos history CHILD-ID\` shows one`);
    if (opts.json) {
      printJson(timeline);
      return EXIT.ok;
    }
    process.stdout.write(`${renderTimeline(timeline, { color: pc.isColorSupported, verbose: opts.verbose })}\n`);
    const link = workflowUiLink(settings, ref, opts.runId);
    if (link) process.stdout.write(`\n${pc.dim(`Temporal UI: ${link}`)}\n`);
    return EXIT.ok;
  } finally {
    await close();
  }
}

export function registerRuns(program: Command): void {
  program
    .command('runs')
    .option('--fleet <name>', 'runs of this fleet (its controller, rollouts and nodes)')
    .option('--image <name>', 'runs that deploy this image')
    .option('--target <name>', 'runs on this target')
    .option('--type <workflow>', 'only this workflow type, e.g. rollout, fleetNode, fleet, manufacture, rebuildHerd')
    .option('--failed', 'only runs that failed or timed out (a rolled-back rollout is a failed run)')
    .option('--running', 'only runs still running')
    .option('--limit <n>', 'at most this many, newest first', '20')
    .option('--json', 'print JSON')
    .description('list workflow runs, newest first, found by fleet, image, target and status (with the failure of each failed one)')
    .action(action((opts: RunsOptions) => runs(opts)));

  program
    .command('history')
    .argument('<run>', 'workflow id, e.g. fleet/PLATFORM/FLEET/rollout/g2 (`kubedos runs` lists them)')
    .option('--run-id <id>', 'a particular run of that workflow id; default: the latest')
    .option('--children <which>', `child runs shown inside it: ${CHILD_MODES.join(', ')}`, 'failed')
    .option('--verbose', 'every event, including first attempts picked up at once')
    .option('--json', 'print the timeline as JSON')
    .description('the event timeline of a run, readable: which node, which step, which error, which retry')
    .action(action((ref: string, opts: HistoryOptions) => history(ref, opts)));
}
