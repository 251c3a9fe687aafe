/**
 * Starting node children, shared by the fleet controller (scaling) and rollouts: one child
 * workflow per node with an id derived from fleet and node, so a replayed or duplicated start is
 * refused by the server instead of doubling a node.
 */
import { CancellationScope, executeChild, isCancellation, ParentClosePolicy } from '@temporalio/workflow';
import type { PreparedImage } from '../src/targets/driver';
import { nodeName, nodeWorkflowId, type FleetTemplate, type ImageRef, type NodeRecord } from './fleet-api';
import { deployActivities, fleetNode } from './node';
import { fleetAttributes } from './search';

export interface LaunchSpec {
  template: FleetTemplate;
  generation: number;
  image: ImageRef;
  prepared: PreparedImage;
}

/** A record for a node about to be launched. */
export function plannedNode(template: FleetTemplate, generation: number, ordinal: number): NodeRecord {
  return { ...nodeName(template, ordinal), generation, state: 'provisioning' };
}

/** Run one node child to the end; any failure but cancellation becomes a `failed` record. */
export async function launchNode(spec: LaunchSpec, node: NodeRecord): Promise<NodeRecord> {
  try {
    return await executeChild(fleetNode, {
      workflowId: nodeWorkflowId(spec.template.platform, spec.template.fleet, node.nodeId),
      args: [{ template: spec.template, nodeId: node.nodeId, hostname: node.hostname, generation: spec.generation, image: spec.image, prepared: spec.prepared }],
      // Terminating a controller must not strand half-made nodes: in-flight children are cancelled
      // and destroy what they made; finished nodes are unaffected.
      parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
      typedSearchAttributes: fleetAttributes(spec.template.fleet, spec.image.name, spec.template.target.name),
    });
  } catch (err) {
    if (isCancellation(err)) throw err;
    const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : String(err);
    return { ...node, state: 'failed', error: cause };
  }
}

/** Destroy nodes, at most `concurrency` at a time, in a scope no cancellation can interrupt. */
export function destroyNodes(template: FleetTemplate, nodes: readonly NodeRecord[], concurrency: number): Promise<void> {
  const { destroyNode } = deployActivities(template);
  return CancellationScope.nonCancellable(async () => {
    for (let i = 0; i < nodes.length; i += concurrency) {
      await Promise.all(nodes.slice(i, i + concurrency).map((n) => destroyNode({ target: template.target, nodeId: n.nodeId })));
    }
  });
}
