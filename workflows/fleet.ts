/**
 * fleet: the controller of one fleet on one target. It holds the fleet at its desired state
 * (image, replicas): scaling launches or destroys nodes of the running generation; a new image
 * starts a `rollout` child (N → N+1, rolled back automatically on failure). Steered while it runs
 * by the scale/deploy updates and the abort/pause/resume/teardown signals; read by the status
 * query. It continues-as-new when idle and its history grows, so it can run for years.
 */
import {
  ApplicationFailure,
  ChildWorkflowFailure,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  isCancellation,
  setHandler,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
  type ChildWorkflowHandle,
} from '@temporalio/workflow';
import {
  abortSignal,
  deploySignal,
  deployUpdate,
  fleetStatusQuery,
  MAX_REPLICAS,
  pauseSignal,
  resumeSignal,
  rolloutFinishedSignal,
  rolloutWorkflowId,
  scaleUpdate,
  teardownSignal,
  type DeployRequest,
  type FleetInput,
  type FleetPhase,
  type FleetResult,
  type FleetState,
  type FleetStatus,
  type FleetTemplate,
  type GenerationStatus,
  type RolloutSummary,
} from './fleet-api';
import { destroyNodes, launchNode, plannedNode } from './launch';
import { deployActivities } from './node';
import { requirePool } from './pools';
import { rollout, ROLLOUT_ABORTED, ROLLOUT_ROLLED_BACK, type RolloutResult } from './rollout';
import { fleetAttributes, PHASE } from './search';

/** Continue-as-new once idle past this many events (well under Temporal's 50k limit). */
const HISTORY_LIMIT = 10_000;
/** Failed nodes kept in the status for people to read; older ones drop off. */
const FAILED_KEPT = 20;

const DIGEST = /^[0-9a-f]{64}$/;

function templateOf(input: FleetInput): FleetTemplate {
  const { platform, fleet, target, deployQueue, artifactFormat, poolWaitMs, hostnamePrefix, authorizedKeys, healthCheck, rollout: policy } = input;
  return { platform, fleet, target, deployQueue, artifactFormat, poolWaitMs, hostnamePrefix, authorizedKeys, healthCheck, rollout: policy };
}

function validateReplicas(replicas: unknown): void {
  if (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas < 0 || replicas > MAX_REPLICAS) {
    throw new Error(`replicas must be a whole number from 0 to ${MAX_REPLICAS}, got ${JSON.stringify(replicas)}`);
  }
}

function validateDeploy(req: DeployRequest, current: FleetTemplate): void {
  if (req?.replicas !== undefined) validateReplicas(req.replicas);
  if (!req?.image?.name || !DIGEST.test(req.image.digest ?? '')) {
    throw new Error(`deploy needs {image: {name, digest}} with a 64-hex-digit sha256 digest, got ${JSON.stringify(req?.image)}`);
  }
  const t = req.template;
  if (t && (t.platform !== current.platform || t.fleet !== current.fleet || t.target.name !== current.target.name)) {
    throw new Error(
      `a running fleet keeps its platform, name and target (${current.platform}/${current.fleet} on ${current.target.name}); ` +
        `to move it, run kubedos down and deploy it again`,
    );
  }
}

function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.cause instanceof Error ? err.cause.message : err.message;
  return String(err);
}

export async function fleet(input: FleetInput): Promise<FleetResult> {
  let template = templateOf(input);
  const state: FleetState = input.state ?? {
    generation: 0,
    image: input.image,
    replicas: input.replicas,
    nodes: [],
    nextOrdinal: 0,
    paused: false,
    rollouts: [],
    pendingImage: input.image,
    images: {},
    notify: input.notify ? [input.notify] : [],
  };
  let phase: FleetPhase = 'starting';
  let step = 'starting';
  let degraded = false;
  let abortRequested = false;
  let teardown = false;
  let child: ChildWorkflowHandle<typeof rollout> | undefined;
  let childId: string | undefined;
  let events = 0;

  const live = () => state.nodes.filter((n) => n.state !== 'failed');
  const setPhase = (next: FleetPhase) => {
    if (next === phase) return;
    phase = next;
    upsertSearchAttributes([{ key: PHASE, value: next }]);
  };
  const forward = (send: (h: ChildWorkflowHandle<typeof rollout>) => Promise<void>) => {
    if (child) void send(child).catch(() => undefined);
  };

  setHandler(fleetStatusQuery, (): FleetStatus => {
    const generations = new Map<number, GenerationStatus>();
    for (const n of state.nodes) {
      const g = generations.get(n.generation) ?? { generation: n.generation, image: state.images[n.generation] ?? state.image, desired: 0, ready: 0, provisioning: 0, failed: 0 };
      g[n.state === 'ready' ? 'ready' : n.state === 'failed' ? 'failed' : 'provisioning']++;
      generations.set(n.generation, g);
    }
    const current = generations.get(state.generation);
    if (current) current.desired = state.replicas;
    return {
      platform: template.platform,
      fleet: template.fleet,
      target: template.target.name,
      deployQueue: template.deployQueue,
      phase: state.paused && !child && phase !== 'tearing-down' && phase !== 'destroyed' ? 'paused' : phase,
      paused: state.paused,
      desired: { image: state.pendingImage ?? state.image, replicas: state.replicas },
      generation: state.generation,
      generations: [...generations.values()].sort((a, b) => a.generation - b.generation),
      step,
      lastError: state.lastError,
      rolloutWorkflowId: childId,
      rollouts: state.rollouts,
      nodes: state.nodes,
    };
  });
  setHandler(
    scaleUpdate,
    (replicas) => {
      state.replicas = replicas;
      degraded = false;
      events++;
      return replicas;
    },
    { validator: validateReplicas },
  );
  const acceptDeploy = (req: DeployRequest): { generation: number; unchanged: boolean } => {
    const current = state.pendingImage ?? state.image;
    events++;
    // New settings apply to every node made from now on (this rollout's included).
    if (req.template) template = req.template;
    if (req.replicas !== undefined && req.replicas !== state.replicas) {
      state.replicas = req.replicas;
      degraded = false;
    }
    if (current.digest === req.image.digest && !state.pendingImage && state.generation > 0) {
      // Already running this image: nothing to roll; tell the requester right away.
      if (req.notify) {
        void getExternalWorkflowHandle(req.notify)
          .signal(rolloutFinishedSignal, { fleet: template.fleet, image: state.image, outcome: 'unchanged' })
          .catch(() => undefined);
      }
      return { generation: state.generation, unchanged: true };
    }
    if (req.notify) state.notify.push(req.notify);
    if (current.digest === req.image.digest) return { generation: state.generation + 1, unchanged: false };
    state.pendingImage = req.image;
    degraded = false;
    return { generation: state.generation + 1, unchanged: false };
  };
  setHandler(deployUpdate, acceptDeploy, { validator: (req) => validateDeploy(req, template) });
  setHandler(deploySignal, (req) => {
    try {
      validateDeploy(req, template);
    } catch (err) {
      state.lastError = `ignored deploy signal: ${errorMessage(err)}`;
      // A signal has no reply: whoever waits for the outcome is told it was refused, and why.
      if (req?.notify) {
        void getExternalWorkflowHandle(req.notify)
          .signal(rolloutFinishedSignal, { fleet: template.fleet, image: state.image, outcome: 'refused', error: errorMessage(err) })
          .catch(() => undefined);
      }
      return;
    }
    acceptDeploy(req);
  });
  setHandler(abortSignal, (req) => {
    abortRequested = true;
    state.lastError = `aborted: ${req?.reason ?? 'by request'}`;
    forward((h) => h.signal(abortSignal, req));
    events++;
  });
  setHandler(pauseSignal, () => {
    state.paused = true;
    forward((h) => h.signal(pauseSignal));
    events++;
  });
  setHandler(resumeSignal, () => {
    state.paused = false;
    abortRequested = false;
    degraded = false;
    forward((h) => h.signal(resumeSignal));
    events++;
  });
  setHandler(teardownSignal, () => {
    teardown = true;
    forward((h) => h.signal(abortSignal, { reason: 'fleet teardown' }));
    events++;
  });

  const notifyWaiters = async (outcome: RolloutSummary['outcome'] | 'unchanged', error?: string) => {
    const waiting = state.notify.splice(0);
    for (const id of new Set(waiting)) {
      await getExternalWorkflowHandle(id)
        .signal(rolloutFinishedSignal, { fleet: template.fleet, image: state.image, outcome, error })
        .catch(() => undefined); // the waiter may be gone; the fleet does not depend on it
    }
  };

  const runRollout = async (image: NonNullable<FleetState['pendingImage']>) => {
    setPhase('rolling-out');
    const to = { generation: state.generation + 1, image };
    state.images[to.generation] = image;
    const from = state.generation > 0 ? { generation: state.generation, image: state.image, nodes: state.nodes.filter((n) => n.state === 'ready') } : undefined;
    childId = rolloutWorkflowId(template.platform, template.fleet, to.generation, state.rollouts.filter((r) => r.to === to.generation).length + 1);
    step = `rolling out generation ${to.generation} (${image.name}@${image.digest.slice(0, 12)})`;
    let result: RolloutResult;
    let summary: RolloutSummary;
    try {
      child = await startChild(rollout, {
        workflowId: childId,
        args: [{ template, from, to, replicas: state.replicas, nextOrdinal: state.nextOrdinal }],
        typedSearchAttributes: fleetAttributes(template.fleet, image.name, template.target.name, 'rolling-out'),
      });
      if (state.paused) await child.signal(pauseSignal);
      if (abortRequested || teardown) await child.signal(abortSignal, { reason: teardown ? 'fleet teardown' : 'aborted by request' });
      result = await child.result();
      summary = { workflowId: childId, from: from?.generation ?? 0, to: to.generation, outcome: 'completed' };
      state.generation = to.generation;
      state.image = image;
      state.lastError = undefined;
    } catch (err) {
      if (isCancellation(err)) throw err;
      const failure = err instanceof ChildWorkflowFailure && err.cause instanceof ApplicationFailure ? err.cause : undefined;
      const details = failure && (failure.type === ROLLOUT_ROLLED_BACK || failure.type === ROLLOUT_ABORTED) ? (failure.details?.[0] as RolloutResult | undefined) : undefined;
      if (!details) throw err; // a bug, not a rollback: fail loudly with the child's error
      result = details;
      summary = { workflowId: childId, from: from?.generation ?? 0, to: to.generation, outcome: details.outcome, error: details.error };
      state.lastError = failure!.message;
      if (details.outcome === 'aborted') state.paused = true;
    } finally {
      child = undefined;
      childId = undefined;
    }
    state.nodes = [...result.nodes, ...result.failed.slice(-FAILED_KEPT)];
    const kept = new Set(state.nodes.map((n) => n.generation));
    state.images = Object.fromEntries(Object.entries(state.images).filter(([g]) => kept.has(Number(g))));
    state.nextOrdinal = result.nextOrdinal;
    step = summary.outcome === 'completed' ? `generation ${state.generation} rolled out` : `rollout to generation ${to.generation} ${summary.outcome}: ${summary.error}`;
    state.pendingImage = undefined;
    state.rollouts = [...state.rollouts, summary].slice(-10);
    abortRequested = false;
    await notifyWaiters(summary.outcome, summary.error);
  };

  /** Launch or destroy nodes of the running generation until `replicas` are live. */
  const reconcile = async () => {
    const surplus = live().length - state.replicas;
    if (surplus > 0) {
      setPhase('scaling');
      // Newest first: the oldest nodes have proven themselves longest.
      const gone = [...live()].sort((a, b) => b.nodeId.localeCompare(a.nodeId)).slice(0, surplus);
      step = `scaling down: destroying ${gone.length} node(s)`;
      await destroyNodes(template, gone, template.rollout.batchSize);
      const ids = new Set(gone.map((n) => n.nodeId));
      state.nodes = state.nodes.filter((n) => !ids.has(n.nodeId));
      return;
    }
    setPhase(state.generation === 0 ? 'provisioning' : 'scaling');
    const { prepareImage } = deployActivities(template);
    let prepared;
    try {
      await requirePool(template.deployQueue, template.poolWaitMs);
      prepared = await prepareImage({ target: template.target, image: state.image, format: template.artifactFormat });
    } catch (err) {
      if (isCancellation(err)) throw err;
      degraded = true;
      state.lastError = `cannot scale: image ${state.image.name} refused on ${template.target.name}: ${errorMessage(err)}`;
      step = state.lastError;
      return;
    }
    const spec = { template, generation: state.generation, image: state.image, prepared };
    let inflight = 0;
    let failedInRow = 0;
    let done = 0;
    const running: Promise<void>[] = [];
    while (!abortRequested && !state.paused && !teardown && failedInRow < template.rollout.failureThreshold) {
      const want = state.replicas - live().length;
      if (want <= 0 && inflight === 0) break;
      const n = Math.min(want, template.rollout.batchSize - inflight);
      for (let i = 0; i < n; i++) {
        const node = plannedNode(template, state.generation, state.nextOrdinal++);
        state.nodes.push(node);
        inflight++;
        running.push(
          launchNode(spec, node).then((result) => {
            Object.assign(node, result);
            if (result.state === 'failed') {
              failedInRow++;
              state.lastError = `${node.nodeId}: ${result.error}`;
            } else failedInRow = 0;
            inflight--;
            done++;
          }),
        );
      }
      step = `scaling to ${state.replicas}: ${live().filter((x) => x.state === 'ready').length} ready, ${inflight} provisioning`;
      const seen = done + events;
      await condition(() => done + events !== seen);
    }
    await Promise.all(running);
    const failed = state.nodes.filter((n) => n.state === 'failed');
    state.nodes = [...state.nodes.filter((n) => n.state !== 'failed'), ...failed.slice(-FAILED_KEPT)];
    if (failedInRow >= template.rollout.failureThreshold) {
      degraded = true;
      step = `stopped scaling: ${failedInRow} node(s) failed in a row`;
    }
    if (abortRequested) {
      state.paused = true;
      abortRequested = false;
    }
  };

  const needsWork = () =>
    teardown || (!state.paused && !degraded && (state.pendingImage !== undefined || (state.generation > 0 && live().length !== state.replicas)));

  for (;;) {
    if (teardown) {
      setPhase('tearing-down');
      step = `destroying ${state.nodes.length} node(s)`;
      await destroyNodes(template, state.nodes, template.rollout.batchSize);
      const destroyed = state.nodes.length;
      state.nodes = [];
      setPhase('destroyed');
      step = 'destroyed';
      await notifyWaiters('aborted', 'fleet torn down');
      return { fleet: template.fleet, destroyed };
    }
    if (!state.paused && state.pendingImage) {
      await runRollout(state.pendingImage);
      continue;
    }
    if (needsWork()) {
      await reconcile();
      continue;
    }
    setPhase(state.paused ? 'paused' : degraded ? 'degraded' : 'steady');
    if (!state.paused && !degraded) step = `generation ${state.generation}: ${live().length}/${state.replicas} ready`;
    if (workflowInfo().continueAsNewSuggested || workflowInfo().historyLength > (input.historyLimit ?? HISTORY_LIMIT)) {
      await continueAsNew<typeof fleet>({ ...input, ...template, state });
    }
    const seen = events;
    await condition(() => events !== seen && needsWork());
  }
}
