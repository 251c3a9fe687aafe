/**
 * Fleets from the command line: `deploy`, `up`, `down`, `scale`, `abort`, `pause`, `resume` and
 * `status`. Each is a thin client of the fleet workflow (updates, signals, queries); the same
 * operations work from the Temporal UI and the `temporal` CLI by workflow id.
 */
import { WorkflowExecutionAlreadyStartedError, WorkflowUpdateFailedError, type Client, type WorkflowHandle } from '@temporalio/client';
import type { Command } from 'commander';
import type { BuildImageResult } from '../../../activities/build';
import {
  abortSignal,
  deployUpdate,
  fleetStatusQuery,
  fleetWorkflowId,
  pauseSignal,
  resumeSignal,
  scaleUpdate,
  teardownSignal,
  type FleetInput,
  type FleetResult,
  type FleetStatus,
  type ImageRef,
} from '../../../workflows/fleet-api';
import { fleetAttributes } from '../../../workflows/search';
import { ConfigError, SpecError } from '../../errors';
import { POOLS } from '../../pools/pools';
import { acceptedFormats, formatSpecError, loadSpec } from '../../platform';
import type { Spec } from '../../platform/types';
import { closeStore, configuredStore } from '../../store/default';
import { listPins, pin, unpin } from '../../store/pins';
import { connectClient } from '../../temporal/client';
import { workflowUiLink, type ConnectionSettings } from '../../temporal/connection';
import { action, type GlobalOptions } from '../command';
import { EXIT, type ExitCode } from '../exit-codes';
import { fleetInputFromSpec, findFleet, renderFleetStatus, rolloutStatus, runningFleets, selectFleets } from '../fleets';
import { followBuilds, stageRequests, startManufacture } from '../manufacture';
import { pruneFleetImages, renderPrune } from '../prune-images';
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
 * The image each fleet runs. Targets that consume bytes get a signed publication: the image is
 * manufactured (a build whose inputs did not change is found and skipped) and the publication's
 * digest deployed, which the deploy side verifies before use. Hollow targets need no bytes: the
 * staged plan's digest names what they simulate.
 */
async function resolveImages(client: Client, settings: ConnectionSettings, specFile: string, spec: Spec, fleets: string[], json: boolean): Promise<Map<string, ImageRef>> {
  const images = new Map<string, ImageRef>();
  const store = configuredStore();
  try {
    const needsBytes = (image: string) => fleets.some((f) => spec.fleets[f]!.image === image && acceptedFormats(spec.targets[spec.fleets[f]!.target]!.type) !== 'any');
    const wanted = [...new Set(fleets.map((f) => spec.fleets[f]!.image))];
    const toBuild = wanted.filter(needsBytes);
    const planned = wanted.filter((i) => !needsBytes(i));
    if (planned.length) {
      for (const r of await stageRequests(specFile, spec, store, { images: planned })) images.set(r.image, { name: r.image, digest: r.input.planDigest });
    }
    if (toBuild.length) {
      const requests = await stageRequests(specFile, spec, store, { images: toBuild });
      const handles = await startManufacture(client, settings, requests);
      const results = (await followBuilds(client, handles, requests, { progress: !json })) as (BuildImageResult & { publicationDigest?: string })[];
      for (const r of results) {
        if (!r.publicationDigest) throw new Error(`the build of ${r.image} returned no publication digest`);
        images.set(r.image, { name: r.image, digest: r.publicationDigest });
        // What a fleet runs must survive gc (and stay there to roll back to): pin it for the fleet.
        for (const f of fleets.filter((f) => spec.fleets[f]!.image === r.image)) await pin(store, r.publicationDigest, fleetPinReason(spec, f));
      }
    }
  } finally {
    closeStore(store);
  }
  return images;
}

/** Start the fleet's controller, or hand a running one the new image and replica count. */
async function startOrUpdate(client: Client, input: FleetInput): Promise<{ handle: WorkflowHandle; generation?: number; started: boolean }> {
  const workflowId = fleetWorkflowId(input.platform, input.fleet);
  try {
    const handle = await client.workflow.start('fleet', {
      taskQueue: POOLS.control.taskQueue,
      workflowId,
      args: [input],
      // The id is the fleet: a second controller for it is refused, never doubled.
      workflowIdConflictPolicy: 'FAIL',
      typedSearchAttributes: fleetAttributes(input.fleet, input.image.name, input.target.name, 'starting'),
    });
    return { handle, generation: 1, started: true };
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
    const handle = client.workflow.getHandle(workflowId);
    const { image, replicas: _replicas, state: _state, ...template } = input;
    const { generation } = await handle.executeUpdate(deployUpdate, { args: [{ image, template }] }).catch(rejectedUpdate);
    const status = await handle.query(fleetStatusQuery);
    if (status.desired.replicas !== input.replicas) await handle.executeUpdate(scaleUpdate, { args: [input.replicas] });
    return { handle, generation, started: false };
  }
}

/** Settled: the wanted generation serves (or its rollout ended) and nothing is in flight. */
function settled(s: FleetStatus, digest: string, generation: number | undefined): 'ok' | 'failed' | undefined {
  if (s.phase === 'rolling-out' || s.phase === 'provisioning' || s.phase === 'scaling' || s.phase === 'starting') return undefined;
  const ready = s.nodes.filter((n) => n.state === 'ready' && n.generation === s.generation).length;
  if (s.desired.image.digest === digest && s.generation >= (generation ?? 0) && ready === s.desired.replicas && s.phase === 'steady') return 'ok';
  const lastRollout = s.rollouts.at(-1);
  if (lastRollout && generation !== undefined && lastRollout.to >= generation && lastRollout.outcome !== 'completed') return 'failed';
  if (s.phase === 'degraded' || s.phase === 'paused') return 'failed';
  return undefined;
}

/** Poll until every fleet has settled, drawing one live line per fleet on a TTY. */
async function waitSettled(client: Client, waits: { handle: WorkflowHandle; digest: string; generation?: number }[], timeoutMs: number, live: boolean): Promise<{ status: FleetStatus; outcome: 'ok' | 'failed' | 'timeout' }[]> {
  const deadline = Date.now() + timeoutMs;
  const results: ({ status: FleetStatus; outcome: 'ok' | 'failed' | 'timeout' } | undefined)[] = waits.map(() => undefined);
  let drawn = 0;
  while (results.some((r) => !r)) {
    const lines: string[] = [];
    for (const [i, w] of waits.entries()) {
      if (results[i]) continue;
      const status = await w.handle.query(fleetStatusQuery);
      const outcome = settled(status, w.digest, w.generation) ?? (Date.now() > deadline ? 'timeout' : undefined);
      if (outcome) results[i] = { status, outcome };
      const rollout = await rolloutStatus(client, status);
      lines.push(`${status.platform}/${status.fleet}: ${status.phase} — ${rollout ? `${rollout.to.ready}/${rollout.to.desired} ready, ${rollout.to.provisioning} provisioning, ${rollout.to.failed} failed` : status.step}`);
    }
    if (live && process.stderr.isTTY) {
      if (drawn) process.stderr.write(`\x1b[${drawn}A`);
      for (const l of lines) process.stderr.write(`\x1b[2K${l}\n`);
      drawn = lines.length;
    }
    if (results.some((r) => !r)) await sleep(500);
  }
  return results as { status: FleetStatus; outcome: 'ok' | 'failed' | 'timeout' }[];
}

function parseTimeout(text: string | undefined, fallbackMs: number): number {
  if (!text) return fallbackMs;
  const m = /^(\d+)(s|m|h)$/.exec(text);
  if (!m) throw new ConfigError(`--timeout: expected e.g. 90s, 30m or 2h, got "${text}"`);
  return Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 's' | 'm' | 'h'];
}

async function deploy(specFile: string, opts: DeployOptions, mode: 'deploy' | 'up'): Promise<ExitCode> {
  const started = Date.now();
  const spec = await loadSpec(specFile);
  const fleets = selectFleets(spec, opts.fleet);
  const { client, settings, close } = await connectClient();
  try {
    const images = await resolveImages(client, settings, specFile, spec, fleets, Boolean(opts.json));
    const waits = [];
    for (const name of fleets) {
      const input = fleetInputFromSpec(spec, name, images.get(spec.fleets[name]!.image)!);
      const { handle, generation, started: fresh } = await startOrUpdate(client, input);
      const link = workflowUiLink(settings, handle.workflowId);
      if (!opts.json) note(`${input.platform}/${name}: ${fresh ? 'started' : `updated (generation ${generation})`} ${handle.workflowId}${link ? `  ${link}` : ''}`);
      waits.push({ handle, digest: input.image.digest, generation });
    }
    if (opts.wait === false) return EXIT.ok;
    const results = await waitSettled(client, waits, parseTimeout(opts.timeout, 30 * 60_000), !opts.json);
    const seconds = (Date.now() - started) / 1000;
    if (opts.json) {
      printJson({ seconds, fleets: results.map((r) => ({ outcome: r.outcome, ...r.status })), ui: settings.uiUrl });
    } else {
      for (const r of results) {
        process.stdout.write(`${renderFleetStatus(r.status, undefined, { nodes: true })}\n\n`);
        const verdict = r.outcome === 'ok' ? pc.green('healthy') : pc.red(r.outcome === 'timeout' ? 'timed out' : 'not healthy');
        process.stdout.write(`${r.status.platform}/${r.status.fleet}: ${verdict} after ${seconds.toFixed(1)} s\n`);
      }
      if (settings.uiUrl && mode === 'up') process.stdout.write(`Temporal UI: ${settings.uiUrl}\n`);
    }
    return results.every((r) => r.outcome === 'ok') ? EXIT.ok : EXIT.failure;
  } finally {
    await close();
  }
}

/** The pin reason of a fleet's publications: `fleet/<platform>/<fleet>`. */
const fleetPinReason = (spec: Spec, fleet: string) => `fleet/${spec.metadata.name}/${fleet}`;

/** A fleet that is down runs nothing: its publications may be collected again. */
async function unpinFleets(spec: Spec, fleets: string[]): Promise<void> {
  const store = configuredStore();
  try {
    const reasons = new Set(fleets.map((f) => fleetPinReason(spec, f)));
    for (const p of await listPins(store)) if (reasons.has(p.reason)) await unpin(store, p.sha256, p.reason);
  } finally {
    closeStore(store);
  }
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
  const { client, close } = await connectClient();
  try {
    for (;;) {
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
      process.stdout.write(`\x1b[2J\x1b[H${text}\n\n(refreshing every second; Ctrl-C to stop)\n`);
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
