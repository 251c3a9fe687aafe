/**
 * Client side of fleets, shared by deploy/up/down/scale/abort/pause/resume/status: map a spec's
 * fleet onto the fleet workflow's input, find a running fleet by name, render its status.
 */
import type { Client, WorkflowHandle } from '@temporalio/client';
import type { FleetInput, FleetStatus, FleetTemplate, ImageRef } from '../../workflows/fleet-api';
import { fleetWorkflowId } from '../../workflows/fleet-api';
import type { RolloutStatus } from '../../workflows/rollout';
import { ConfigError } from '../errors';
import { POOLS } from '../pools/pools';
import { deployFormat, poolOfTarget } from '../targets';
import type { Spec } from '../platform/types';
import { renderTable } from './output';

/** One fleet of the spec as the fleet workflow takes it (everything but the image), checked. */
export function fleetSpecFromSpec(spec: Spec, fleetName: string, queues: { deploy?: string } = {}): FleetTemplate & { replicas: number } {
  const fleet = spec.fleets[fleetName];
  if (!fleet) throw new ConfigError(`--fleet: no fleet named "${fleetName}"`, `the spec defines ${Object.keys(spec.fleets).join(', ') || 'no fleets'}`);
  const target = spec.targets[fleet.target]!;
  const imageSpec = spec.images[fleet.image]!;
  return {
    platform: spec.metadata.name,
    fleet: fleetName,
    target: { name: fleet.target, spec: target },
    deployQueue: queues.deploy ?? POOLS[poolOfTarget(target.type)].taskQueue,
    artifactFormat: deployFormat(target.type, imageSpec.outputs, target as Record<string, unknown>),
    hostnamePrefix: imageSpec.hostnamePrefix ?? fleet.image,
    authorizedKeys: [...imageSpec.authorizedKeys],
    healthCheck: fleet.healthCheck,
    rollout: fleet.rollout,
    replicas: fleet.replicas,
  };
}

/** The fleet workflow's input for one fleet of the spec, running `image`. */
export function fleetInputFromSpec(spec: Spec, fleetName: string, image: ImageRef, queues: { deploy?: string } = {}): FleetInput {
  return { ...fleetSpecFromSpec(spec, fleetName, queues), image };
}

/**
 * A fleet by `platform/fleet`, or by fleet name alone when exactly one running fleet has it
 * (found through the KubedosFleet search attribute).
 */
export async function findFleet(client: Client, ref: string): Promise<WorkflowHandle> {
  if (ref.includes('/')) {
    const [platform, fleet] = ref.split('/', 2) as [string, string];
    return client.workflow.getHandle(fleetWorkflowId(platform, fleet));
  }
  const ids: string[] = [];
  for await (const wf of client.workflow.list({ query: `WorkflowType = 'fleet' AND ExecutionStatus = 'Running' AND KubedosFleet = '${ref.replace(/'/g, '')}'` })) {
    ids.push(wf.workflowId);
  }
  if (ids.length === 0) throw new ConfigError(`no running fleet named "${ref}"`, 'deploy it with `kubedos deploy SPEC --fleet NAME`; `kubedos status` lists running fleets');
  if (ids.length > 1) throw new ConfigError(`several running fleets are named "${ref}": ${ids.join(', ')}`, 'name it as PLATFORM/FLEET');
  return client.workflow.getHandle(ids[0]!);
}

/** Every running fleet workflow. */
export async function runningFleets(client: Client): Promise<WorkflowHandle[]> {
  const handles: WorkflowHandle[] = [];
  for await (const wf of client.workflow.list({ query: `WorkflowType = 'fleet' AND ExecutionStatus = 'Running'` })) {
    handles.push(client.workflow.getHandle(wf.workflowId));
  }
  return handles;
}

/** A rollout's live status, when one is in progress. */
export async function rolloutStatus(client: Client, status: FleetStatus): Promise<RolloutStatus | undefined> {
  if (!status.rolloutWorkflowId) return undefined;
  return client.workflow.getHandle(status.rolloutWorkflowId).query<RolloutStatus>('rolloutStatus').catch(() => undefined);
}

const short = (digest: string) => digest.slice(0, 12);

export function renderFleetStatus(s: FleetStatus, rollout?: RolloutStatus, options: { nodes?: boolean } = {}): string {
  const lines = [
    `fleet ${s.platform}/${s.fleet} on ${s.target}: ${s.phase}${s.paused ? ' (paused)' : ''}`,
    `  desired    ${s.desired.replicas} × ${s.desired.image.name}@${short(s.desired.image.digest)}`,
    `  running    generation ${s.generation}`,
    `  step       ${s.step}`,
  ];
  if (s.lastError) lines.push(`  last error ${s.lastError}`);
  if (rollout) {
    lines.push(
      `  rollout    ${rollout.phase}: ${rollout.step}`,
      `             generation ${rollout.to.generation}: ${rollout.to.ready}/${rollout.to.desired} ready, ${rollout.to.provisioning} provisioning, ${rollout.to.failed} failed (threshold ${rollout.failureThreshold})`,
    );
  }
  lines.push(
    '',
    renderTable(
      ['GEN', 'IMAGE', 'DESIRED', 'READY', 'PROVISIONING', 'FAILED'],
      s.generations.map((g) => [String(g.generation), `${g.image.name}@${short(g.image.digest)}`, String(g.desired), String(g.ready), String(g.provisioning), String(g.failed)]),
    ),
  );
  if (options.nodes && s.nodes.length) {
    lines.push(
      '',
      renderTable(
        ['NODE', 'HOSTNAME', 'GEN', 'STATE', 'READY IN', 'HOST KEY', 'MACHINE-ID'],
        s.nodes.map((n) => [
          n.nodeId,
          n.hostname,
          String(n.generation),
          n.state + (n.error && n.state === 'failed' ? `: ${n.error.slice(0, 60)}` : ''),
          n.readyMs === undefined ? '' : `${(n.readyMs / 1000).toFixed(1)} s`,
          n.identity?.hostKeyFingerprint ?? '',
          n.identity?.machineId ?? '',
        ]),
      ),
    );
  }
  if (s.rollouts.length) {
    lines.push('', 'recent rollouts:');
    for (const r of s.rollouts.slice(-5)) lines.push(`  g${r.from} → g${r.to} ${r.outcome}${r.error ? `: ${r.error}` : ''}  (${r.workflowId})`);
  }
  return lines.join('\n');
}
