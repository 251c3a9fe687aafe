/**
 * fleetNode: one node's life from nothing to healthy — provision (with its own identity), start,
 * health-check. A node that misses its deadline is destroyed and replaced by a fresh one with the
 * same id, up to the check's `retries`; then it reports `failed` and the caller decides. Cancelled
 * (a rollback, an abort), it destroys what it made in a non-cancellable scope before it ends.
 */
import { CancellationScope, isCancellation, proxyActivities, proxyLocalActivities, workflowInfo, type RetryPolicy } from '@temporalio/workflow';
import type { DeployActivities } from '../activities/deploy';
import type { PreparedImage } from '../src/targets/driver';
import type { FleetTemplate, ImageRef, NodeRecord } from './fleet-api';

/**
 * Longest a deploy step may wait for a worker to pick it up. Steps are short and a pool serves a
 * batch at once, so only a pool that died after its check waits this long.
 */
const PICKUP = '10m';

export interface FleetNodeInput {
  template: FleetTemplate;
  nodeId: string;
  hostname: string;
  generation: number;
  image: ImageRef;
  prepared: PreparedImage;
}

export function deployActivities(template: FleetTemplate) {
  // Which failures are final is said by each error's class (non-retryable failures end the retries).
  const retry: RetryPolicy = { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 5 };
  const healthTimeout = template.healthCheck.timeout + 60_000; // the check's own timeout, plus the last probe
  if (template.deployQueue === workflowInfo().taskQueue) {
    // The target's steps run on this very worker (hollow nodes on the control pool): as local
    // activities they skip the round trip through the server's matching, which is what bounds
    // fleets of a thousand nodes. Still retried, recorded and cancellable; a worker that dies
    // mid-step is replaced by the next workflow task's attempt.
    const local = proxyLocalActivities<DeployActivities>({ startToCloseTimeout: '10m', retry });
    const health = proxyLocalActivities<DeployActivities>({ startToCloseTimeout: healthTimeout, retry });
    return {
      createNode: local.createNode,
      startNode: local.startNode,
      destroyNode: local.destroyNode,
      listNodes: local.listNodes,
      awaitNodeHealthy: health.awaitNodeHealthy,
      prepareImage: local.prepareImage,
    };
  }
  // Short steps: a worker that dies mid-step is noticed within the heartbeat timeout; a pool that
  // has no worker at all leaves a step unstarted for at most PICKUP (the rollout checked it first).
  const quick = proxyActivities<DeployActivities>({ taskQueue: template.deployQueue, scheduleToStartTimeout: PICKUP, startToCloseTimeout: '10m', heartbeatTimeout: '20s', retry });
  const health = proxyActivities<DeployActivities>({
    taskQueue: template.deployQueue,
    scheduleToStartTimeout: PICKUP,
    startToCloseTimeout: healthTimeout,
    // The check heartbeats every few seconds, also while a probe waits: this only notices a dead worker.
    heartbeatTimeout: Math.max(30_000, template.healthCheck.interval * 3),
    retry,
  });
  const prepare = proxyActivities<DeployActivities>({ taskQueue: template.deployQueue, scheduleToStartTimeout: PICKUP, startToCloseTimeout: '2h', heartbeatTimeout: '2m', retry });
  // proxyActivities returns a Proxy: name each function (spreading it copies nothing).
  return {
    createNode: quick.createNode,
    startNode: quick.startNode,
    destroyNode: quick.destroyNode,
    listNodes: quick.listNodes,
    awaitNodeHealthy: health.awaitNodeHealthy,
    prepareImage: prepare.prepareImage,
  };
}

function message(err: unknown): string {
  if (err instanceof Error) return err.cause instanceof Error ? err.cause.message : err.message;
  return String(err);
}

export async function fleetNode(input: FleetNodeInput): Promise<NodeRecord> {
  const { template } = input;
  const acts = deployActivities(template);
  const target = template.target;
  const started = Date.now();
  const record: NodeRecord = { nodeId: input.nodeId, hostname: input.hostname, generation: input.generation, state: 'provisioning' };
  const destroy = () => CancellationScope.nonCancellable(() => acts.destroyNode({ target, nodeId: input.nodeId }));

  for (let attempt = 1; attempt <= template.healthCheck.retries + 1; attempt++) {
    record.attempts = attempt;
    try {
      record.identity = await acts.createNode({
        target,
        nodeId: input.nodeId,
        hostname: input.hostname,
        labels: { platform: template.platform, fleet: template.fleet, generation: input.generation, image: input.image.name, imageDigest: input.image.digest },
        image: input.prepared,
        authorizedKeys: template.authorizedKeys,
      });
      await acts.startNode({ target, nodeId: input.nodeId });
      await acts.awaitNodeHealthy({ target, nodeId: input.nodeId, healthCheck: template.healthCheck, identity: record.identity });
      record.state = 'ready';
      record.readyAt = Date.now();
      record.readyMs = record.readyAt - started;
      delete record.error;
      return record;
    } catch (err) {
      if (isCancellation(err)) {
        await destroy();
        throw err;
      }
      record.error = `attempt ${attempt}: ${message(err)}`;
      // A node that failed is never repaired: it goes, and a fresh one takes its id.
      await destroy();
      delete record.identity;
    }
  }
  record.state = 'failed';
  record.readyMs = undefined;
  return record;
}
