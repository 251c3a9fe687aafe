/**
 * Schedules from the command line, backed by Temporal Schedules (so they show in the Web UI and
 * the `temporal schedule` CLI): `schedule apply SPEC` creates or updates every schedule of a
 * spec; `create`, `list`, `describe`, `pause`, `unpause`, `trigger`, `delete` act on one.
 *
 * A schedule's action starts `rebuildHerd` on the control queue with digests only: each image's
 * plan (and lock) is staged in the configured store when the schedule is created or applied, so
 * every scheduled run manufactures exactly what the spec said then. Overlap policy: skip — a run
 * still going when the next one is due makes that one not happen.
 */
import {
  ScheduleAlreadyRunning,
  ScheduleNotFoundError,
  ScheduleOverlapPolicy,
  type Client,
  type ScheduleDescription,
  type ScheduleHandle,
  type ScheduleOptionsStartWorkflowAction,
  type ScheduleSpecDescription,
  type ScheduleSummary,
} from '@temporalio/client';
import type { Command } from 'commander';
import type { HerdImage, RebuildHerdInput, rebuildHerd } from '../../../workflows/rebuild-herd';
import { ConfigError, SpecError } from '../../errors';
import { POOLS } from '../../pools/pools';
import { formatSpecError, loadSpec } from '../../platform';
import {
  CRON_HINT,
  herdImages,
  parseScheduleId,
  scheduleDefinition,
  scheduledWorkflowId,
  scheduleId,
  type ScheduleDefinition,
  type ScheduleOverrides,
} from '../../platform/schedules';
import type { Spec } from '../../platform/types';
import { configuredStore, withStore } from '../../store/default';
import { connectClient } from '../../temporal/client';
import type { ConnectionSettings } from '../../temporal/connection';
import { action, type GlobalOptions } from '../command';
import { EXIT, type ExitCode } from '../exit-codes';
import { stageRequests } from '../manufacture';
import { colors as pc, printJson, renderTable } from '../output';

const list = (v: string) => v.split(',').map((s) => s.trim()).filter(Boolean);
const specErrorDetail = (err: unknown) => (err instanceof SpecError ? formatSpecError(err) : undefined);

/** How long after its time a missed run (the server was down) still happens. */
const CATCHUP_WINDOW = '1 day';

type ScheduleAction = ScheduleOptionsStartWorkflowAction<typeof rebuildHerd>;

/** Stage each image's plan in the store and build the action's input: digests and names only. */
async function stageHerd(specFile: string, spec: Spec, def: ScheduleDefinition): Promise<RebuildHerdInput> {
  const wanted = herdImages(spec, def);
  return withStore(configuredStore(), async (store) => {
    const requests = await stageRequests(specFile, spec, store, { images: wanted.map((w) => w.image) });
    const images: HerdImage[] = wanted.map((w) => ({ image: w.image, manufacture: requests.find((r) => r.image === w.image)!.input, fleets: w.fleets }));
    return { platform: def.platform, images };
  });
}

function scheduleAction(def: ScheduleDefinition, input: RebuildHerdInput): ScheduleAction {
  return {
    type: 'startWorkflow',
    workflowType: 'rebuildHerd',
    taskQueue: POOLS.control.taskQueue,
    workflowId: scheduledWorkflowId(def.platform, def.name),
    args: [input],
  };
}

const scheduleSpecOf = (def: ScheduleDefinition) => ({ cronExpressions: [def.cron], timezone: def.timezone });
const policies = { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: CATCHUP_WINDOW } as const;

/** A cron or time-zone mistake the server caught that the loose local check let through. */
function rejected(err: unknown, def: ScheduleDefinition): never {
  const code = (err as { code?: number; cause?: { code?: number } })?.code ?? (err as { cause?: { code?: number } })?.cause?.code;
  if (code === 3 /* INVALID_ARGUMENT */) {
    throw new ConfigError(`Temporal rejected schedule ${def.name} (cron "${def.cron}", timezone ${def.timezone}): ${(err as Error).message}`, CRON_HINT, { cause: err });
  }
  throw err;
}

type Outcome = 'created' | 'updated';

async function createOrUpdate(client: Client, def: ScheduleDefinition, input: RebuildHerdInput, mode: 'create' | 'apply'): Promise<{ outcome: Outcome; paused: boolean }> {
  const id = scheduleId(def.platform, def.name);
  try {
    await client.schedule.create({
      scheduleId: id,
      spec: scheduleSpecOf(def),
      action: scheduleAction(def, input),
      policies,
      state: { paused: def.paused, note: def.paused ? 'created paused by kubedos' : undefined },
    });
    return { outcome: 'created', paused: def.paused };
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) rejected(err, def);
    if (mode === 'create') {
      throw new ConfigError(`schedule ${def.platform}/${def.name} already exists`, `\`kubedos schedule apply SPEC\` updates it; \`kubedos schedule delete ${def.platform}/${def.name}\` removes it`);
    }
  }
  // Apply never unpauses a schedule someone paused: that is `kubedos schedule unpause`.
  let paused = def.paused;
  await client.schedule
    .getHandle(id)
    .update((previous) => {
      paused = def.paused || previous.state.paused;
      return { ...previous, spec: scheduleSpecOf(def), action: scheduleAction(def, input), policies, state: { ...previous.state, paused } };
    })
    .catch((err) => rejected(err, def));
  return { outcome: 'updated', paused };
}

function scheduleUiLink(settings: ConnectionSettings, id: string): string | undefined {
  if (!settings.uiUrl) return undefined;
  return `${settings.uiUrl.replace(/\/+$/, '')}/namespaces/${encodeURIComponent(settings.namespace)}/schedules/${encodeURIComponent(id)}`;
}

interface Applied {
  schedule: string;
  id: string;
  outcome: Outcome;
  paused: boolean;
  cron: string;
  timezone: string;
  images: { image: string; planDigest: string; lockDigest?: string; fleets: string[] }[];
  ui?: string;
}

async function applySchedules(specFile: string, names: string[] | undefined, overrides: ScheduleOverrides, opts: GlobalOptions, mode: 'create' | 'apply'): Promise<ExitCode> {
  const spec = await loadSpec(specFile);
  const wanted = names ?? Object.keys(spec.schedules);
  if (!wanted.length) throw new ConfigError(`${specFile}: the spec defines no schedules`, 'add a schedules: section (e.g. nightly: {cron: "0 3 * * *"}), or use `kubedos schedule create NAME --spec SPEC --cron …`');
  // Every definition is checked before anything is staged or created.
  const defs = wanted.map((name) => scheduleDefinition(spec, name, overrides));
  const { client, settings, close } = await connectClient();
  try {
    const out: Applied[] = [];
    for (const def of defs) {
      const input = await stageHerd(specFile, spec, def);
      const { outcome, paused } = await createOrUpdate(client, def, input, mode);
      const id = scheduleId(def.platform, def.name);
      out.push({
        schedule: `${def.platform}/${def.name}`,
        id,
        outcome,
        paused,
        cron: def.cron,
        timezone: def.timezone,
        images: input.images.map((i) => ({ image: i.image, planDigest: i.manufacture.planDigest, lockDigest: i.manufacture.lockDigest, fleets: i.fleets })),
        ui: scheduleUiLink(settings, id),
      });
    }
    if (opts.json) printJson({ schedules: out });
    else {
      for (const a of out) {
        process.stdout.write(`${a.schedule}: ${a.outcome}${a.paused ? ' (paused)' : ''}  ${a.cron} ${a.timezone}  ${a.id}${a.ui ? `  ${a.ui}` : ''}\n`);
        for (const i of a.images) process.stdout.write(`  ${i.image}: plan ${i.planDigest.slice(0, 12)}${i.lockDigest ? `, lock ${i.lockDigest.slice(0, 12)}` : ''} → ${i.fleets.length ? i.fleets.join(', ') : 'build only'}\n`);
      }
    }
    return EXIT.ok;
  } finally {
    await close();
  }
}

// ---------------------------------------------------------------------------------------------
// reading schedules back

const MONTHS = ['january', 'february', 'march', 'april', 'may', 'june', 'july', 'august', 'september', 'october', 'november', 'december'];
const DAYS = ['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday'];

type RangeDescription = { start: number | string; end: number | string; step: number };

function cronField(ranges: readonly RangeDescription[] | undefined, min: number, max: number, names?: string[]): string {
  if (!ranges?.length) return '*';
  const value = (v: number | string) => (typeof v === 'number' ? v : names ? names.indexOf(v.toLowerCase()) + (names === MONTHS ? 1 : 0) : Number(v));
  const label = (v: number | string) => (typeof v === 'string' && names ? v.slice(0, 3).toLowerCase() : String(v));
  return ranges
    .map((r) => {
      const step = r.step > 1 ? `/${r.step}` : '';
      if (value(r.start) === min && value(r.end) === max) return `*${step}`;
      if (value(r.start) === value(r.end)) return label(r.start);
      return `${label(r.start)}-${label(r.end)}${step}`;
    })
    .join(',');
}

/**
 * The server keeps a cron expression as a structured calendar; read it back as cron, which is
 * what was written (seconds only when not 0).
 */
export function describeWhen(spec: ScheduleSpecDescription | undefined): string {
  const parts = (spec?.calendars ?? []).map((c) => {
    const cal = c as unknown as Record<string, RangeDescription[]>;
    const fields = [
      cronField(cal.minute, 0, 59),
      cronField(cal.hour, 0, 23),
      cronField(cal.dayOfMonth, 1, 31),
      cronField(cal.month, 1, 12, MONTHS),
      cronField(cal.dayOfWeek, 0, 6, DAYS),
    ];
    const seconds = cronField(cal.second, 0, 59);
    return seconds === '0' ? fields.join(' ') : `${seconds} ${fields.join(' ')}`;
  });
  for (const i of spec?.intervals ?? []) parts.push(`every ${i.every} ms`);
  return parts.join(' | ') || '(no times)';
}

/** A schedule by `PLATFORM/NAME`, its full id, or its name alone when exactly one platform has it. */
async function findSchedule(client: Client, ref: string): Promise<ScheduleHandle> {
  if (ref.startsWith('schedule/')) return client.schedule.getHandle(ref);
  if (ref.includes('/')) {
    const [platform, name] = ref.split('/', 2) as [string, string];
    return client.schedule.getHandle(scheduleId(platform, name));
  }
  const ids: string[] = [];
  for await (const s of client.schedule.list()) if (parseScheduleId(s.scheduleId)?.name === ref) ids.push(s.scheduleId);
  if (ids.length === 0) throw new ConfigError(`no schedule named "${ref}"`, '`kubedos schedule list` shows the schedules; `kubedos schedule apply SPEC` creates those of a spec');
  if (ids.length > 1) throw new ConfigError(`several schedules are named "${ref}": ${ids.join(', ')}`, 'name it as PLATFORM/NAME');
  return client.schedule.getHandle(ids[0]!);
}

function notFound(ref: string): (err: unknown) => never {
  return (err) => {
    if (err instanceof ScheduleNotFoundError) throw new ConfigError(`no schedule "${ref}"`, '`kubedos schedule list` shows the schedules', { cause: err });
    throw err;
  };
}

interface ScheduleListRow {
  schedule: string;
  id: string;
  when: string;
  timezone: string;
  workflowType?: string;
  paused: boolean;
  note?: string;
  nextRuns: string[];
  recentRuns: { scheduledAt: string; workflowId: string }[];
}

function listRow(s: ScheduleSummary): ScheduleListRow {
  const pn = parseScheduleId(s.scheduleId);
  return {
    schedule: pn ? `${pn.platform}/${pn.name}` : s.scheduleId,
    id: s.scheduleId,
    when: describeWhen(s.spec),
    timezone: s.spec?.timezone || 'UTC',
    workflowType: s.action?.workflowType,
    paused: s.state.paused,
    note: s.state.note || undefined,
    nextRuns: s.info.nextActionTimes.slice(0, 3).map((d) => d.toISOString()),
    recentRuns: s.info.recentActions.map((a) => ({ scheduledAt: a.scheduledAt.toISOString(), workflowId: a.action.workflow.workflowId })),
  };
}

const when = (iso: string | undefined) => (iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '');

async function listSchedules(opts: GlobalOptions & { all?: boolean }): Promise<ExitCode> {
  const { client, close } = await connectClient();
  try {
    const rows: ScheduleListRow[] = [];
    for await (const s of client.schedule.list()) if (opts.all || parseScheduleId(s.scheduleId)) rows.push(listRow(s));
    rows.sort((a, b) => a.schedule.localeCompare(b.schedule));
    if (opts.json) {
      printJson({ schedules: rows });
      return EXIT.ok;
    }
    if (!rows.length) {
      process.stdout.write('no schedules (`kubedos schedule apply SPEC` creates those of a spec)\n');
      return EXIT.ok;
    }
    process.stdout.write(
      `${renderTable(
        ['SCHEDULE', 'WHEN', 'TIME ZONE', 'STATE', 'NEXT RUN', 'LAST RUN'],
        rows.map((r) => [r.schedule, r.when, r.timezone, r.paused ? pc.yellow('paused') : pc.green('active'), r.paused ? '' : when(r.nextRuns[0]), r.recentRuns.at(-1)?.workflowId ?? '']),
      )}\n`,
    );
    return EXIT.ok;
  } finally {
    await close();
  }
}

/** What `describe` reports: the schedule, what it runs (the staged digests), and its runs. */
export function describeSchedule(d: ScheduleDescription): Record<string, unknown> {
  const pn = parseScheduleId(d.scheduleId);
  const act = d.action as { type: string; workflowType?: string; taskQueue?: string; workflowId?: string; args?: unknown[] };
  const input = act.args?.[0] as RebuildHerdInput | undefined;
  return {
    schedule: pn ? `${pn.platform}/${pn.name}` : d.scheduleId,
    id: d.scheduleId,
    when: describeWhen(d.spec),
    timezone: d.spec.timezone || 'UTC',
    paused: d.state.paused,
    note: d.state.note || undefined,
    overlap: d.policies.overlap,
    catchupWindowMs: d.policies.catchupWindow,
    workflowType: act.workflowType,
    taskQueue: act.taskQueue,
    workflowId: act.workflowId,
    images: input?.images?.map((i) => ({ image: i.image, planDigest: i.manufacture.planDigest, lockDigest: i.manufacture.lockDigest, specDigest: i.manufacture.specDigest, fleets: i.fleets })),
    nextRuns: d.info.nextActionTimes.slice(0, 5).map((t) => t.toISOString()),
    recentRuns: d.info.recentActions.map((a) => ({ scheduledAt: a.scheduledAt.toISOString(), takenAt: a.takenAt.toISOString(), workflowId: a.action.workflow.workflowId, runId: a.action.workflow.firstExecutionRunId })),
    runningRuns: d.info.runningActions.map((a) => a.workflow.workflowId),
    actionsTaken: d.info.numActionsTaken,
    skippedOverlap: d.info.numActionsSkippedOverlap,
    missedCatchupWindow: d.info.numActionsMissedCatchupWindow,
    createdAt: d.info.createdAt.toISOString(),
    updatedAt: d.info.lastUpdatedAt?.toISOString(),
  };
}

function renderDescription(x: ReturnType<typeof describeSchedule>, ui?: string): string {
  const images = (x.images as { image: string; planDigest: string; lockDigest?: string; fleets: string[] }[] | undefined) ?? [];
  const recent = x.recentRuns as { scheduledAt: string; workflowId: string }[];
  const lines = [
    `schedule ${x.schedule}: ${x.paused ? pc.yellow('paused') : pc.green('active')}${x.note ? ` (${x.note})` : ''}`,
    `  id         ${x.id}`,
    `  when       ${x.when} (${x.timezone})`,
    `  runs       ${x.workflowType} on ${x.taskQueue} as ${x.workflowId}-<time>; overlap ${String(x.overlap).toLowerCase()}`,
    ...images.map((i, n) => `  ${n === 0 ? 'images    ' : '          '} ${i.image}: plan ${i.planDigest.slice(0, 12)}${i.lockDigest ? `, lock ${i.lockDigest.slice(0, 12)}` : ''} → ${i.fleets.length ? `fleets ${i.fleets.join(', ')}` : 'build only'}`),
    `  next       ${x.paused ? '(paused)' : (x.nextRuns as string[]).slice(0, 3).map(when).join(', ')}`,
    `  taken      ${x.actionsTaken} run(s); ${x.skippedOverlap} skipped (a run still going); ${x.missedCatchupWindow} missed`,
  ];
  if ((x.runningRuns as string[]).length) lines.push(`  running    ${(x.runningRuns as string[]).join(', ')}`);
  for (const r of recent.slice(-5)) lines.push(`  recent     ${when(r.scheduledAt)}  ${r.workflowId}`);
  if (ui) lines.push(`  UI         ${ui}`);
  return lines.join('\n');
}

async function withSchedule(ref: string, fn: (handle: ScheduleHandle, client: Client, settings: ConnectionSettings) => Promise<ExitCode | void>): Promise<ExitCode | void> {
  const { client, settings, close } = await connectClient();
  try {
    return await fn(await findSchedule(client, ref), client, settings);
  } finally {
    await close();
  }
}

/**
 * Trigger now; report the run it started, or that the overlap policy skipped it. The SDK's
 * trigger allows overlap unless told otherwise: the schedule's own policy is passed explicitly.
 */
async function trigger(handle: ScheduleHandle, opts: { json?: boolean; force?: boolean }): Promise<ExitCode> {
  const json = Boolean(opts.json);
  const before = await handle.describe().catch(notFound(handle.scheduleId));
  const seen = new Set(before.info.recentActions.map((a) => a.action.workflow.firstExecutionRunId));
  await handle.trigger(opts.force ? ScheduleOverlapPolicy.ALLOW_ALL : before.policies.overlap).catch(notFound(handle.scheduleId));
  // The scheduler takes the action asynchronously: wait briefly to name the run it started.
  const deadline = Date.now() + 10_000;
  for (;;) {
    const d = await handle.describe();
    const started = d.info.recentActions.find((a) => !seen.has(a.action.workflow.firstExecutionRunId));
    if (!started && d.info.numActionsSkippedOverlap === before.info.numActionsSkippedOverlap && Date.now() > deadline) {
      throw new Error(`${handle.scheduleId}: triggered, but no run started within 10 s`);
    }
    if (started || d.info.numActionsSkippedOverlap > before.info.numActionsSkippedOverlap) {
      const result = started
        ? { triggered: true, workflowId: started.action.workflow.workflowId, runId: started.action.workflow.firstExecutionRunId }
        : { triggered: false, skipped: true, running: d.info.runningActions.map((a) => a.workflow.workflowId) };
      if (json) printJson(result);
      else if (started) process.stdout.write(`${handle.scheduleId}: started ${started.action.workflow.workflowId}\n`);
      else process.stdout.write(`${handle.scheduleId}: skipped: a run is still going (overlap policy skip)${result.running?.length ? `: ${result.running.join(', ')}` : ''}\n`);
      return started ? EXIT.ok : EXIT.failure;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

interface CreateOptions extends GlobalOptions {
  spec: string;
  cron?: string;
  timezone?: string;
  fleet?: string[];
  paused?: boolean;
}

export function registerSchedule(program: Command): void {
  const schedule = program
    .command('schedule')
    .description('recurring runs (the nightly rebuild of the herd) as Temporal Schedules, overlap policy skip');

  schedule
    .command('apply')
    .argument('<spec>', 'platform spec file or directory')
    .option('--json', 'print JSON')
    .description("create or update every schedule of the spec's schedules: section, staging each image's plan in the store")
    .action(action((specFile: string, opts: GlobalOptions) => applySchedules(specFile, undefined, {}, opts, 'apply'), specErrorDetail));

  schedule
    .command('create')
    .argument('<name>', "schedule name (the spec's schedules.<name> gives the defaults)")
    .requiredOption('--spec <spec>', 'platform spec file or directory')
    .option('--cron <expression>', 'five-field cron expression, e.g. "0 3 * * *"; default: the spec\'s')
    .option('--timezone <zone>', 'IANA time zone the cron expression is read in; default: the spec\'s, else UTC')
    .option('--fleet <names>', 'fleets to roll (comma-separated); default: the spec\'s, else every fleet', list)
    .option('--paused', 'create it paused')
    .option('--json', 'print JSON')
    .description('create one schedule that rebuilds the images of its fleets and rolls them out (refused if it exists)')
    .action(
      action(
        (name: string, opts: CreateOptions) =>
          applySchedules(opts.spec, [name], { cron: opts.cron, timezone: opts.timezone, fleets: opts.fleet, paused: opts.paused }, opts, 'create'),
        specErrorDetail,
      ),
    );

  schedule
    .command('list')
    .option('--all', 'also schedules not made by kubedos')
    .option('--json', 'print JSON')
    .description('every schedule: when it runs, paused or not, its next and last run')
    .action(action((opts: GlobalOptions & { all?: boolean }) => listSchedules(opts)));

  schedule
    .command('describe')
    .argument('<name>', 'NAME or PLATFORM/NAME')
    .option('--json', 'print JSON')
    .description('a schedule in full: when, what it runs (image plan digests, fleets), recent and running runs')
    .action(
      action((ref: string, opts: GlobalOptions) =>
        withSchedule(ref, async (handle, _client, settings) => {
          const d = describeSchedule(await handle.describe().catch(notFound(ref)));
          if (opts.json) printJson(d);
          else process.stdout.write(`${renderDescription(d, scheduleUiLink(settings, handle.scheduleId))}\n`);
        }),
      ),
    );

  schedule
    .command('pause')
    .argument('<name>', 'NAME or PLATFORM/NAME')
    .option('--note <text>', 'why; shown by describe and in the UI', 'paused from the kubedos CLI')
    .description('stop a schedule from starting runs (a run in progress goes on)')
    .action(
      action((ref: string, opts: { note: string }) =>
        withSchedule(ref, async (handle) => {
          await handle.pause(opts.note).catch(notFound(ref));
          process.stdout.write(`${handle.scheduleId}: paused\n`);
        }),
      ),
    );

  schedule
    .command('unpause')
    .argument('<name>', 'NAME or PLATFORM/NAME')
    .description('let a paused schedule start runs again')
    .action(
      action((ref: string) =>
        withSchedule(ref, async (handle) => {
          await handle.unpause('unpaused from the kubedos CLI').catch(notFound(ref));
          process.stdout.write(`${handle.scheduleId}: active\n`);
        }),
      ),
    );

  schedule
    .command('trigger')
    .argument('<name>', 'NAME or PLATFORM/NAME')
    .option('--force', 'start it even while another run of the schedule is going')
    .option('--json', 'print JSON')
    .description('start a run now (skipped, exit 1, while a run of the schedule is still going: overlap policy skip)')
    .action(action((ref: string, opts: GlobalOptions & { force?: boolean }) => withSchedule(ref, (handle) => trigger(handle, opts))));

  schedule
    .command('delete')
    .argument('<name>', 'NAME or PLATFORM/NAME')
    .description('delete a schedule (runs it started are not affected)')
    .action(
      action((ref: string) =>
        withSchedule(ref, async (handle) => {
          await handle.delete().catch(notFound(ref));
          process.stdout.write(`${handle.scheduleId}: deleted\n`);
        }),
      ),
    );

}
