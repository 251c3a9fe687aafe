/**
 * Fleets from the command line: `deploy`, `up`, `down`, `scale`, `abort`, `pause`, `resume` and
 * `status`. `deploy`/`up` stage each image's plan and start one deployPlatform run (the same steps
 * as a scheduled rebuildHerd: manufacture → publish → pin → roll out), then follow it; the others
 * are thin clients of the fleet workflow (updates, signals, queries), and work the same from the
 * Temporal UI and the `temporal` CLI by workflow id.
 */
import { WorkflowUpdateFailedError, type Client, type WorkflowHandle } from '@temporalio/client';
import type { Command } from 'commander';
import { rollOutStatusQuery, type deployPlatform, type FleetOutcome, type RollOutInput, type RollOutResult, type RollOutStatus } from '../../../workflows/deploy-platform';
import {
  abortSignal,
  fleetPinReason,
  fleetStatusQuery,
  fleetWorkflowId,
  pauseSignal,
  resumeSignal,
  scaleUpdate,
  teardownSignal,
  type FleetResult,
  type FleetStatus,
} from '../../../workflows/fleet-api';
import { ConfigError, SpecError } from '../../errors';
import { POOLS } from '../../pools/pools';
import { acceptedFormats, formatSpecError, loadSpec } from '../../platform';
import { selectFleets } from '../../platform/fleets';
import type { Spec } from '../../platform/types';
import { configuredStore, withStore } from '../../store/default';
import { listPins, unpin } from '../../store/pins';
import { connectClient } from '../../temporal/client';
import { awaitPollers } from '../../temporal/pollers';
import { stackStatus } from '../../temporal/stack';
import { poolOfTarget } from '../../targets';
import { workflowUiLink } from '../../temporal/connection';
import { action, type GlobalOptions } from '../command';
import { EXIT, type ExitCode } from '../exit-codes';
import { findFleet, fleetSpecFromSpec, renderFleetStatus, rolloutStatus, runningFleets } from '../fleets';
import { buildProgress, stageRequests } from '../manufacture';
import { pruneFleetImages, renderPrune } from '../prune-images';
import { poolWarnings } from '../pool-warnings';
import { colors as pc, note, printJson } from '../output';

const list = (v: string) => v.split(',').map((s) => s.trim()).filter(Boolean);
const specErrorDetail = (err: unknown) => (err instanceof SpecError ? formatSpecError(err) : undefined);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface DeployOptions extends GlobalOptions {
  fleet?: string[];
  wait?: boolean;
  timeout?: string;
}

/**
 * What `deploy` hands the deployPlatform workflow: each image's staged plan (and lock) and the
 * fleets that run it, as the spec has them now. Images of fleets that need bytes are
 * manufactured and published there; hollow fleets need none, and run the staged plan's digest.
 */
async function stageDeploy(specFile: string, spec: Spec, fleets: string[]): Promise<Omit<RollOutInput, 'startMissing'>> {
  return withStore(configuredStore(), async (store) => {
    const imageOf = (f: string) => spec.fleets[f]!.image;
    const needsBytes = (image: string) => fleets.some((f) => imageOf(f) === image && acceptedFormats(spec.targets[spec.fleets[f]!.target]!.type) !== 'any');
    const requests = await stageRequests(specFile, spec, store, { images: [...new Set(fleets.map(imageOf))] });
    return {
      platform: spec.metadata.name,
      images: requests.map((r) => ({
        image: r.image,
        ...(needsBytes(r.image) ? { manufacture: r.input } : { digest: r.input.planDigest }),
        fleets: fleets.filter((f) => imageOf(f) === r.image).map((f) => ({ fleet: f, spec: fleetSpecFromSpec(spec, f) })),
      })),
    };
  });
}

/**
 * Every pool the deploy will route steps to must have a worker: said now, before anything starts
 * (the workflow would say the same after its own wait). A worker just started gets a moment.
 */
async function requirePools(client: Client, input: Omit<RollOutInput, 'startMissing'>): Promise<void> {
  const queues = new Map<string, string>([[POOLS.control.taskQueue, 'control']]);
  for (const img of input.images) {
    if (img.manufacture) queues.set(img.manufacture.buildQueue ?? POOLS.build.taskQueue, 'build');
    for (const f of img.fleets) if (f.spec) queues.set(f.spec.deployQueue, poolOfTarget(f.spec.target.spec.type));
  }
  await Promise.all([...queues].map(([queue, pool]) => awaitPollers(client, pool, queue, { waitMs: POOL_CHECK_MS })));
}

/** How long `deploy` waits for a pool's first worker before it says the pool is missing. */
const POOL_CHECK_MS = 20_000;

/** One line per image and fleet while the deploy runs (a TTY only). */
async function progressLines(client: Client, deployId: string, status: RollOutStatus | undefined, fleets: WorkflowHandle[]): Promise<string[]> {
  const lines: string[] = [];
  for (const img of status?.images ?? []) {
    let detail: string = img.state;
    if (img.state === 'manufacturing') {
      const beat = await buildProgress(client, client.workflow.getHandle(`${deployId}/manufacture/${img.image}`)).catch(() => undefined);
      if (beat) detail = `building: ${beat.step} (${beat.completed.length} steps done)`;
    }
    lines.push(`${img.image}: ${detail}`);
  }
  for (const h of fleets) {
    const s = await h.query(fleetStatusQuery).catch(() => undefined);
    if (!s) continue;
    const rollout = await rolloutStatus(client, s);
    lines.push(`${s.platform}/${s.fleet}: ${s.phase} — ${rollout ? `${rollout.to.ready}/${rollout.to.desired} ready, ${rollout.to.provisioning} provisioning, ${rollout.to.failed} failed` : s.step}`);
  }
  return lines;
}

/** Redraw a block of lines on stderr in place. */
function liveDrawer(): (lines: string[]) => void {
  let drawn = 0;
  return (lines) => {
    if (!process.stderr.isTTY) return;
    if (drawn) process.stderr.write(`\x1b[${drawn}A`);
    for (const l of lines) process.stderr.write(`\x1b[2K${l}\n`);
    for (let i = lines.length; i < drawn; i++) process.stderr.write('\x1b[2K\n');
    drawn = Math.max(drawn, lines.length);
  };
}

/** A fleet has settled on the deployed image: it serves it with every replica ready and nothing in flight. */
function settled(s: FleetStatus, digest: string): boolean {
  const current = s.generations.find((g) => g.generation === s.generation);
  const ready = s.nodes.filter((n) => n.state === 'ready' && n.generation === s.generation).length;
  return s.phase === 'steady' && current?.image.digest === digest && s.desired.image.digest === digest && ready === s.desired.replicas;
}

type Verdict = 'ok' | 'failed' | 'timeout';

/** What a fleet's rollout outcome means for `deploy`: failed outright, or wait for it to settle. */
function verdictOf(outcome: FleetOutcome): Verdict | undefined {
  return outcome === 'completed' || outcome === 'unchanged' ? undefined : outcome === 'timed-out' ? 'timeout' : 'failed';
}

function parseTimeout(text: string | undefined, fallbackMs: number): number {
  if (!text) return fallbackMs;
  const m = /^(\d+)(s|m|h)$/.exec(text);
  if (!m) throw new ConfigError(`--timeout: expected e.g. 90s, 30m or 2h, got "${text}"`);
  return Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 's' | 'm' | 'h'];
}

async function deploy(specFile: string, opts: DeployOptions, mode: 'deploy' | 'up'): Promise<ExitCode> {
  const started = Date.now();
  const deadline = started + parseTimeout(opts.timeout, 30 * 60_000);
  const spec = await loadSpec(specFile);
  const fleets = selectFleets(spec, opts.fleet);
  const { client, settings, close } = await connectClient();
  try {
    const input = await stageDeploy(specFile, spec, fleets);
    await requirePools(client, input);
    const deployId = `deploy/${input.platform}/${new Date().toISOString().replace(/[:.]/g, '-')}`;
    const run = await client.workflow.start<typeof deployPlatform>('deployPlatform', { taskQueue: POOLS.control.taskQueue, workflowId: deployId, args: [input] });
    const link = workflowUiLink(settings, deployId, run.firstExecutionRunId);
    note(`${input.platform}: workflow ${deployId}${link ? `  ${link}` : ''}`);
    const handles = fleets.map((f) => client.workflow.getHandle(fleetWorkflowId(input.platform, f)));

    // Follow the run: images built and pinned, each fleet handed its image, each rollout's outcome.
    const draw = opts.json ? () => undefined : liveDrawer();
    // (Polled, not long-polled: a pending result() would hold the connection open at exit.)
    let result: RollOutResult | undefined;
    for (;;) {
      const status = await run.query(rollOutStatusQuery).catch(() => undefined);
      if (opts.wait === false && status && status.fleets.length === fleets.length) {
        for (const f of status.fleets) note(`${input.platform}/${f.fleet}: ${f.started ? 'started' : 'updated'} with ${f.image}@${f.digest.slice(0, 12)}`);
        return EXIT.ok;
      }
      draw(await progressLines(client, deployId, status, handles));
      if (status?.phase === 'done' || (await run.describe()).status.name !== 'RUNNING') {
        result = await run.result(); // a failed run throws its failure (a build that failed, …)
        break;
      }
      if (Date.now() > deadline) break;
      await sleep(500);
    }

    // Then every fleet must settle: rolled out (or unchanged) and scaled to its replicas.
    const outcomes = new Map((result?.fleets ?? []).map((f) => [f.fleet, f]));
    const finals: { status: FleetStatus; outcome: Verdict; error?: string }[] = [];
    for (const [i, name] of fleets.entries()) {
      const fleet = outcomes.get(name);
      let verdict: Verdict | undefined = fleet ? verdictOf(fleet.outcome) : 'timeout';
      let status = await handles[i]!.query(fleetStatusQuery);
      while (!verdict) {
        if (settled(status, fleet!.digest)) verdict = 'ok';
        else if (status.phase === 'degraded' || status.phase === 'paused') verdict = 'failed';
        else if (Date.now() > deadline) verdict = 'timeout';
        else {
          draw(await progressLines(client, deployId, undefined, handles));
          await sleep(500);
          status = await handles[i]!.query(fleetStatusQuery);
        }
      }
      finals.push({ status, outcome: verdict, error: fleet?.error });
    }
    const seconds = (Date.now() - started) / 1000;
    if (opts.json) {
      printJson({ seconds, workflowId: deployId, fleets: finals.map((r) => ({ outcome: r.outcome, ...(r.error ? { error: r.error } : {}), ...r.status })), ui: settings.uiUrl });
    } else {
      for (const r of finals) {
        process.stdout.write(`${renderFleetStatus(r.status, undefined, { nodes: true })}\n\n`);
        const verdict = r.outcome === 'ok' ? pc.green('healthy') : pc.red(r.outcome === 'timeout' ? 'timed out' : 'not healthy');
        process.stdout.write(`${r.status.platform}/${r.status.fleet}: ${verdict} after ${seconds.toFixed(1)} s${r.error ? ` (${r.error})` : ''}\n`);
      }
      if (settings.uiUrl && mode === 'up') process.stdout.write(`Temporal UI: ${settings.uiUrl}\n`);
    }
    return finals.every((r) => r.outcome === 'ok') ? EXIT.ok : EXIT.failure;
  } finally {
    await close();
  }
}

/** A fleet that is down runs nothing: its publications may be collected again. */
async function unpinFleets(spec: Spec, fleets: string[]): Promise<void> {
  await withStore(configuredStore(), async (store) => {
    const reasons = new Set(fleets.map((f) => fleetPinReason(spec.metadata.name, f)));
    for (const p of await listPins(store)) if (reasons.has(p.reason)) await unpin(store, p.sha256, p.reason);
  });
}

async function down(specFile: string, opts: DeployOptions & { pruneImages?: boolean }): Promise<ExitCode> {
  const spec = await loadSpec(specFile);
  const fleets = selectFleets(spec, opts.fleet);
  const { client, close } = await connectClient();
  try {
    const out: { fleet: string; destroyed: number; running: boolean }[] = [];
    for (const name of fleets) {
      const handle = client.workflow.getHandle(fleetWorkflowId(spec.metadata.name, name));
      const running = await handle.describe().then((d) => d.status.name === 'RUNNING', () => false);
      if (!running) {
        out.push({ fleet: name, destroyed: 0, running: false });
        continue;
      }
      await handle.signal(teardownSignal);
      const result = (await handle.result()) as FleetResult;
      out.push({ fleet: name, destroyed: result.destroyed, running: true });
    }
    await unpinFleets(spec, fleets);
    const pruned = opts.pruneImages ? await pruneFleetImages(spec, fleets) : undefined;
    if (opts.json) printJson({ fleets: out, ...(pruned ? { prunedImages: pruned } : {}) });
    else {
      for (const f of out) process.stdout.write(`${spec.metadata.name}/${f.fleet}: ${f.running ? `destroyed ${f.destroyed} node(s)` : 'not running'}\n`);
      for (const line of renderPrune(pruned ?? [])) process.stdout.write(`${line}\n`);
    }
    return EXIT.ok;
  } finally {
    await close();
  }
}

/** Run fn against a running fleet found by name; prints what happened. */
async function withFleet(ref: string, fn: (client: Client, handle: WorkflowHandle) => Promise<ExitCode | void>): Promise<ExitCode | void> {
  const { client, close } = await connectClient();
  try {
    return await fn(client, await findFleet(client, ref));
  } finally {
    await close();
  }
}

async function status(ref: string | undefined, opts: GlobalOptions & { nodes?: boolean; watch?: boolean }): Promise<ExitCode> {
  const { client, settings, close } = await connectClient();
  try {
    for (;;) {
      // Said first: a fleet whose control pool is down cannot even answer its status query.
      const warnings = (await poolWarnings(client, settings.embedded ? stackStatus() : undefined)).map((w) => `${pc.yellow('warning')}: ${w.message}`);
      if (!opts.watch) for (const w of warnings) note(w);
      const handles = ref ? [await findFleet(client, ref)] : await runningFleets(client);
      const statuses = await Promise.all(handles.map(async (h) => { const s = await h.query(fleetStatusQuery); return { s, rollout: await rolloutStatus(client, s) }; }));
      if (opts.json) {
        printJson(ref ? { ...statuses[0]!.s, rollout: statuses[0]!.rollout } : statuses.map(({ s, rollout }) => ({ ...s, rollout })));
        return EXIT.ok;
      }
      const text = statuses.length ? statuses.map(({ s, rollout }) => renderFleetStatus(s, rollout, { nodes: opts.nodes || Boolean(ref) })).join('\n\n') : 'no running fleets';
      if (!opts.watch) {
        process.stdout.write(`${text}\n`);
        return EXIT.ok;
      }
      process.stdout.write(`\x1b[2J\x1b[H${[text, ...warnings].join('\n')}\n\n(refreshing every second; Ctrl-C to stop)\n`);
      await sleep(1000);
    }
  } finally {
    await close();
  }
}

function rejectedUpdate(err: unknown): never {
  if (err instanceof WorkflowUpdateFailedError) {
    const cause = err.cause instanceof Error ? err.cause.message : String(err.cause);
    throw new ConfigError(`rejected: ${cause}`);
  }
  throw err;
}

export function registerFleet(program: Command): void {
  const deployOptions = (cmd: Command) =>
    cmd
      .option('--fleet <names>', 'only these fleets (comma-separated); default: every fleet of the spec', list)
      .option('--no-wait', 'return once the fleet workflows have the new desired state')
      .option('--timeout <duration>', 'how long to wait for healthy, e.g. 30m', '30m')
      .option('--json', 'print the final status as JSON');

  deployOptions(
    program
      .command('deploy')
      .argument('<spec>', 'platform spec file or directory')
      .description('build what is missing, then roll the fleets onto their images and wait until healthy'),
  ).action(action((spec: string, opts: DeployOptions) => deploy(spec, opts, 'deploy'), specErrorDetail));

  deployOptions(
    program
      .command('up')
      .argument('<spec>', 'platform spec file or directory')
      .description('build the images and deploy every fleet of the spec; print the nodes and the UI link'),
  ).action(action((spec: string, opts: DeployOptions) => deploy(spec, opts, 'up'), specErrorDetail));

  program
    .command('down')
    .argument('<spec>', 'platform spec file or directory')
    .option('--fleet <names>', 'only these fleets (comma-separated)', list)
    .option('--json', 'print JSON')
    .option('--prune-images', 'then remove the prepared images (cloud images, snapshots) of their targets that no node uses any more')
    .description('destroy every node of the spec\'s fleets and end their controllers')
    .action(action((spec: string, opts: DeployOptions & { pruneImages?: boolean }) => down(spec, opts), specErrorDetail));

  program
    .command('scale')
    .argument('<fleet>', 'FLEET or PLATFORM/FLEET')
    .argument('<replicas>', 'number of nodes')
    .description('set the number of nodes of a running fleet (validated before it is accepted)')
    .action(
      action((ref: string, replicas: string) =>
        withFleet(ref, async (_client, handle) => {
          if (!/^\d+$/.test(replicas)) throw new ConfigError(`replicas must be a whole number, got "${replicas}"`);
          const accepted = await handle.executeUpdate(scaleUpdate, { args: [Number(replicas)] }).catch(rejectedUpdate);
          process.stdout.write(`${handle.workflowId}: scaling to ${accepted}\n`);
        }),
      ),
    );

  program
    .command('abort')
    .argument('<fleet>', 'FLEET or PLATFORM/FLEET')
    .option('--reason <text>', 'recorded in the rollout\'s history and the fleet status')
    .description('stop what a fleet is doing: a rollout rolls back, scaling stops; the fleet then holds (paused)')
    .action(
      action((ref: string, opts: { reason?: string }) =>
        withFleet(ref, async (_client, handle) => {
          await handle.signal(abortSignal, { reason: opts.reason ?? 'aborted from the CLI' });
          process.stdout.write(`${handle.workflowId}: abort requested\n`);
        }),
      ),
    );

  for (const [name, signal, text] of [
    ['pause', pauseSignal, 'pause a fleet between steps (a rollout stops launching nodes)'],
    ['resume', resumeSignal, 'resume a paused, aborted or degraded fleet'],
  ] as const) {
    program
      .command(name)
      .argument('<fleet>', 'FLEET or PLATFORM/FLEET')
      .description(text)
      .action(
        action((ref: string) =>
          withFleet(ref, async (_client, handle) => {
            await handle.signal(signal);
            process.stdout.write(`${handle.workflowId}: ${name} requested\n`);
          }),
        ),
      );
  }

  program
    .command('status')
    .argument('[fleet]', 'FLEET or PLATFORM/FLEET; default: every running fleet')
    .option('--nodes', 'list every node with its identity')
    .option('--watch', 'refresh every second (a live view)')
    .option('--json', 'print JSON')
    .description('phase, generations and nodes of running fleets, with a rollout\'s live progress')
    .action(action((ref: string | undefined, opts: GlobalOptions & { nodes?: boolean; watch?: boolean }) => status(ref, opts)));
}
