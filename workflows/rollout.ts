/**
 * rollout: replace generation N by N+1 under maxSurge / maxUnavailable. New nodes are launched in
 * bounded batches; an old node is retired only while enough new ones are healthy to keep
 * `replicas - maxUnavailable` serving, so with maxUnavailable 0 nothing of N goes before its
 * replacement is healthy. When failures reach the threshold, or on abort, everything of N+1 is
 * destroyed (non-cancellable) and N is restored to its size; the run then fails with the reason,
 * so failed rollouts are listed by `kubedos runs --failed` and readable in their own history.
 */
import {
  ApplicationFailure,
  CancellationScope,
  condition,
  defineQuery,
  isCancellation,
  setHandler,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import { abortSignal, pauseSignal, resolveCount, resumeSignal, type FleetTemplate, type GenerationStatus, type ImageRef, type NodeRecord } from './fleet-api';
import { destroyNodes, launchNode, plannedNode, type LaunchSpec } from './launch';
import { deployActivities } from './node';
import { requirePool } from './pools';
import { PHASE } from './search';

export interface RolloutInput {
  template: FleetTemplate;
  /** The running generation's healthy nodes (absent on a fleet's first deploy). */
  from?: { generation: number; image: ImageRef; nodes: NodeRecord[] };
  to: { generation: number; image: ImageRef };
  replicas: number;
  nextOrdinal: number;
}

export type RolloutOutcome = 'completed' | 'rolled-back' | 'aborted';

export interface RolloutResult {
  outcome: RolloutOutcome;
  /** The fleet's nodes afterwards: all of N+1, or N restored. */
  nodes: NodeRecord[];
  generation: number;
  nextOrdinal: number;
  /** Nodes of N+1 that failed, with their errors. */
  failed: NodeRecord[];
  error?: string;
}

export interface RolloutStatus {
  phase: 'preparing' | 'rolling' | 'paused' | 'rolling-back' | 'done';
  step: string;
  from?: GenerationStatus;
  to: GenerationStatus;
  failures: number;
  failureThreshold: number;
  lastError?: string;
}

export const rolloutStatusQuery = defineQuery<RolloutStatus>('rolloutStatus');

/** Failure types a rollout ends with; the fleet reads the result from the failure's details. */
export const ROLLOUT_ROLLED_BACK = 'RolloutRolledBack';
export const ROLLOUT_ABORTED = 'RolloutAborted';

function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.cause instanceof Error ? err.cause.message : err.message;
  return String(err);
}

function count(nodes: readonly NodeRecord[], generation: number, image: ImageRef, desired: number): GenerationStatus {
  return {
    generation,
    image,
    desired,
    ready: nodes.filter((n) => n.state === 'ready').length,
    provisioning: nodes.filter((n) => n.state === 'provisioning').length,
    failed: nodes.filter((n) => n.state === 'failed').length,
  };
}

export async function rollout(input: RolloutInput): Promise<RolloutResult> {
  const { template, replicas } = input;
  const policy = template.rollout;
  let surge = resolveCount(policy.maxSurge, replicas, 'up');
  const unavailable = resolveCount(policy.maxUnavailable, replicas, 'down');
  if (surge === 0 && unavailable === 0) surge = 1;

  let old = [...(input.from?.nodes ?? [])];
  const originalOld = old.length;
  const fresh: NodeRecord[] = [];
  let nextOrdinal = input.nextOrdinal;
  let paused = false;
  let aborted: string | undefined;
  let events = 0;
  let phase: RolloutStatus['phase'] = 'preparing';
  let step = `verifying and preparing ${input.to.image.name}@${input.to.image.digest.slice(0, 12)} on ${template.target.name}`;
  let lastError: string | undefined;

  const failures = () => fresh.filter((n) => n.state === 'failed').length;
  const ready = () => fresh.filter((n) => n.state === 'ready');
  const inflight = () => fresh.filter((n) => n.state === 'provisioning').length;

  setHandler(rolloutStatusQuery, () => ({
    phase: paused && phase === 'rolling' ? 'paused' : phase,
    step,
    from: input.from && count(old, input.from.generation, input.from.image, 0),
    to: count(fresh, input.to.generation, input.to.image, replicas),
    failures: failures(),
    failureThreshold: policy.failureThreshold,
    lastError,
  }));
  setHandler(abortSignal, (req) => {
    aborted = req?.reason ?? 'aborted by request';
    events++;
  });
  setHandler(pauseSignal, () => {
    paused = true;
    events++;
  });
  setHandler(resumeSignal, () => {
    paused = false;
    events++;
  });

  const acts = deployActivities(template);
  let prepared;
  try {
    await requirePool(template.deployQueue, template.poolWaitMs);
    prepared = await acts.prepareImage({ target: template.target, image: input.to.image, format: template.artifactFormat });
  } catch (err) {
    if (isCancellation(err)) throw err;
    // Refused before any node was touched (a digest or signature that does not verify, an
    // unreachable host): generation N keeps serving as it is.
    const reason = `image ${input.to.image.name}@${input.to.image.digest.slice(0, 12)} refused on ${template.target.name}: ${errorMessage(err)}`;
    phase = 'done';
    step = reason;
    throw ApplicationFailure.create({
      type: ROLLOUT_ROLLED_BACK,
      message: `rollout to generation ${input.to.generation} not started: ${reason}`,
      nonRetryable: true,
      details: [{ outcome: 'rolled-back', nodes: old, generation: input.from?.generation ?? 0, nextOrdinal, failed: [], error: reason } satisfies RolloutResult],
    });
  }
  const spec: LaunchSpec = { template, generation: input.to.generation, image: input.to.image, prepared };
  const launches = new CancellationScope();
  const running: Promise<void>[] = [];

  phase = 'rolling';
  while (aborted === undefined && failures() < policy.failureThreshold && ready().length < replicas) {
    if (!paused) {
      // Retire old nodes the availability budget allows: oldest first.
      const retire = Math.min(old.length, old.length + ready().length - (replicas - unavailable));
      if (retire > 0) {
        step = `retiring ${retire} node(s) of generation ${input.from!.generation}`;
        const gone = old.slice(0, retire);
        old = old.slice(retire);
        await destroyNodes(template, gone, policy.batchSize);
      }
      const room = replicas + surge - (old.length + ready().length + inflight());
      const needed = replicas - ready().length - inflight();
      const n = Math.min(room, needed, policy.batchSize - inflight());
      for (let i = 0; i < n; i++) {
        const node = plannedNode(template, input.to.generation, nextOrdinal++);
        fresh.push(node);
        running.push(
          launches
            .run(() => launchNode(spec, node))
            .then(
              (result) => {
                Object.assign(node, result);
                if (result.state === 'failed') lastError = `${node.nodeId}: ${result.error}`;
              },
              (err) => {
                if (!isCancellation(err)) throw err;
              },
            )
            .finally(() => events++),
        );
      }
      step = `generation ${input.to.generation}: ${ready().length}/${replicas} ready, ${inflight()} provisioning, ${old.length} of generation ${input.from?.generation ?? '-'} serving`;
    }
    const seen = events;
    await condition(() => events !== seen);
  }

  if (aborted === undefined && failures() < policy.failureThreshold) {
    step = `retiring the last ${old.length} node(s) of generation ${input.from?.generation ?? '-'}`;
    await destroyNodes(template, old, policy.batchSize);
    phase = 'done';
    step = `generation ${input.to.generation} serving: ${replicas}/${replicas} ready`;
    return { outcome: 'completed', nodes: ready(), generation: input.to.generation, nextOrdinal, failed: fresh.filter((n) => n.state === 'failed') };
  }

  // Roll back: nothing below runs cancellable, so a second abort cannot leave a half state.
  const outcome: RolloutOutcome = aborted !== undefined ? 'aborted' : 'rolled-back';
  const reason = aborted ?? `${failures()} node(s) of generation ${input.to.generation} failed (threshold ${policy.failureThreshold}); last: ${lastError}`;
  phase = 'rolling-back';
  await CancellationScope.nonCancellable(async () => {
    upsertSearchAttributes([{ key: PHASE, value: 'rolling-back' }]);
    step = `cancelling ${inflight()} node(s) in flight`;
    launches.cancel();
    await Promise.all(running);
    step = `destroying ${ready().length} node(s) of generation ${input.to.generation}`;
    await destroyNodes(template, ready(), policy.batchSize);
    // Restore N to the size it had if nodes were retired before the failure.
    if (input.from && old.length < originalOld) {
      const back: LaunchSpec = { template, generation: input.from.generation, image: input.from.image, prepared: await acts.prepareImage({ target: template.target, image: input.from.image, format: template.artifactFormat }) };
      const missing = originalOld - old.length;
      step = `restoring ${missing} node(s) of generation ${input.from.generation}`;
      const restored = await Promise.all(Array.from({ length: missing }, () => launchNode(back, plannedNode(template, input.from!.generation, nextOrdinal++))));
      old = [...old, ...restored.filter((n) => n.state === 'ready')];
    }
  });
  phase = 'done';
  step = `rolled back to generation ${input.from?.generation ?? '-'} (${old.length} node(s)): ${reason}`;
  const result: RolloutResult = { outcome, nodes: old, generation: input.from?.generation ?? 0, nextOrdinal, failed: fresh.filter((n) => n.state === 'failed'), error: reason };
  throw ApplicationFailure.create({
    type: outcome === 'aborted' ? ROLLOUT_ABORTED : ROLLOUT_ROLLED_BACK,
    message: `rollout to generation ${input.to.generation} ${outcome === 'aborted' ? 'aborted' : 'rolled back'}: ${reason}`,
    nonRetryable: true,
    details: [result],
  });
}
