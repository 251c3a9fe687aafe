/**
 * The fleet's public surface: inputs, state records, and the updates, signals and queries that
 * steer a running fleet. Shared by the workflows and their clients (CLI, tests); `temporal` CLI
 * users address the same names by workflow id, e.g.
 *   temporal workflow signal --workflow-id fleet/quickstart/workers --name pause
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { ImageRef, TargetRef } from '../activities/deploy';
import type { HealthCheck } from '../src/platform/types';
import type { PublicIdentity } from '../src/targets/identity';

export type { ImageRef, TargetRef };

/** Upper bound accepted by the scale update; the spec's own limit. */
export const MAX_REPLICAS = 10_000;

export interface RolloutPolicyInput {
  maxSurge: number | string;
  maxUnavailable: number | string;
  failureThreshold: number;
  batchSize: number;
}

/** Everything a node of the fleet is made from, except its image and generation. */
export interface FleetTemplate {
  platform: string;
  fleet: string;
  target: TargetRef;
  /** Task queue of the pool that runs this target's deploy activities. */
  deployQueue: string;
  /** The artifact format the target deploys (from its descriptor and the image's outputs); absent when it needs no bytes. */
  artifactFormat?: string;
  /** How long a step waits for a worker to poll deployQueue before it fails. @default POOL_WAIT_MS (2 min) */
  poolWaitMs?: number;
  hostnamePrefix: string;
  authorizedKeys: string[];
  healthCheck: HealthCheck;
  rollout: RolloutPolicyInput;
}

export type NodeState = 'provisioning' | 'ready' | 'failed';

export interface NodeRecord {
  nodeId: string;
  hostname: string;
  generation: number;
  state: NodeState;
  identity?: PublicIdentity;
  /** Health checks passed after this many ms from the node's first step. */
  readyMs?: number;
  /** When the node passed its health check (epoch ms, workflow time). */
  readyAt?: number;
  attempts?: number;
  error?: string;
}

export type FleetPhase = 'starting' | 'provisioning' | 'scaling' | 'rolling-out' | 'steady' | 'degraded' | 'paused' | 'tearing-down' | 'destroyed';

export interface GenerationStatus {
  generation: number;
  image: ImageRef;
  desired: number;
  ready: number;
  provisioning: number;
  failed: number;
}

export interface RolloutSummary {
  workflowId: string;
  from: number;
  to: number;
  outcome: 'completed' | 'rolled-back' | 'aborted';
  error?: string;
}

export interface FleetStatus {
  platform: string;
  fleet: string;
  target: string;
  /** Task queue of the pool that runs the target's steps (absent in fleets started before it was reported). */
  deployQueue?: string;
  phase: FleetPhase;
  paused: boolean;
  desired: { image: ImageRef; replicas: number };
  generation: number;
  generations: GenerationStatus[];
  step: string;
  lastError?: string;
  /** The rollout in progress (query it for its own live status). */
  rolloutWorkflowId?: string;
  rollouts: RolloutSummary[];
  nodes: NodeRecord[];
}

/** Carried across continueAsNew: the fleet's whole memory. */
export interface FleetState {
  generation: number;
  image: ImageRef;
  replicas: number;
  nodes: NodeRecord[];
  nextOrdinal: number;
  paused: boolean;
  rollouts: RolloutSummary[];
  lastError?: string;
  pendingImage?: ImageRef;
  /** Image of each generation that still has nodes (or failed ones) in `nodes`. */
  images: Record<number, ImageRef>;
  /** Workflows waiting for the next rollout's outcome (rebuildHerd). */
  notify: string[];
}

export interface FleetInput extends FleetTemplate {
  image: ImageRef;
  replicas: number;
  /** Workflow id to signal `rolloutFinished` when the first rollout ends (the deploy that started the fleet). */
  notify?: string;
  /** Present after continueAsNew. */
  state?: FleetState;
  /** Continue-as-new once idle past this many history events. @default 10000 */
  historyLimit?: number;
}

export interface FleetResult {
  fleet: string;
  destroyed: number;
}

export interface DeployRequest {
  image: ImageRef;
  /**
   * The fleet's spec as it is now (health check, rollout policy, hostnames, keys, target
   * settings): applied to nodes made from now on. Platform, fleet and target name cannot change.
   */
  template?: FleetTemplate;
  /** The replica count from now on; absent: unchanged. Validated like the scale update. */
  replicas?: number;
  /** Workflow id to signal `rolloutFinished` when the rollout this request causes ends (or at once, when it is refused or changes nothing). */
  notify?: string;
}

export interface RolloutFinished {
  fleet: string;
  image: ImageRef;
  /** `refused`: the request was not valid for this fleet (see `error`); nothing changed. */
  outcome: RolloutSummary['outcome'] | 'unchanged' | 'refused';
  error?: string;
}

/** Set the replica count; validated before it enters history. Returns the accepted count. */
export const scaleUpdate = defineUpdate<number, [number]>('scale');
/** Roll the fleet onto another image. Returns the generation that will run it. */
export const deployUpdate = defineUpdate<{ generation: number; unchanged: boolean }, [DeployRequest]>('deploy');
/** The same as the deploy update, as a signal (workflows cannot send updates). */
export const deploySignal = defineSignal<[DeployRequest]>('deployImage');
/** Stop what is in progress: a rollout rolls back, scaling stops; the fleet then holds (paused). */
export const abortSignal = defineSignal<[{ reason?: string }?]>('abort');
export const pauseSignal = defineSignal('pause');
export const resumeSignal = defineSignal('resume');
/** Destroy every node and end the fleet's controller. */
export const teardownSignal = defineSignal('teardown');
export const fleetStatusQuery = defineQuery<FleetStatus>('status');
/** Sent to a DeployRequest's `notify` workflow when the rollout it caused has ended. */
export const rolloutFinishedSignal = defineSignal<[RolloutFinished]>('rolloutFinished');

/** The reason a fleet pins the publications it runs in the artifact store (gc keeps them): `fleet/<platform>/<fleet>`. */
export function fleetPinReason(platform: string, fleet: string): string {
  return `fleet/${platform}/${fleet}`;
}

export function fleetWorkflowId(platform: string, fleet: string): string {
  return `fleet/${platform}/${fleet}`;
}

export function nodeWorkflowId(platform: string, fleet: string, nodeId: string): string {
  return `fleet/${platform}/${fleet}/node/${nodeId}`;
}

/** `…/rollout/g3` for the first try at generation 3, `…/rollout/g3.2` after a refused or rolled-back one. */
export function rolloutWorkflowId(platform: string, fleet: string, generation: number, attempt = 1): string {
  return `fleet/${platform}/${fleet}/rollout/g${generation}${attempt > 1 ? `.${attempt}` : ''}`;
}

/** Node ids are unique on a target across platforms and never reused within a fleet. */
export function nodeName(template: Pick<FleetTemplate, 'platform' | 'fleet' | 'hostnamePrefix'>, ordinal: number): { nodeId: string; hostname: string } {
  const n = String(ordinal).padStart(4, '0');
  return { nodeId: `${template.platform}-${template.fleet}-${n}`, hostname: `${template.hostnamePrefix}-${n}` };
}

/** maxSurge / maxUnavailable as counts: percentages round surge up and unavailability down (as Kubernetes does). */
export function resolveCount(value: number | string, replicas: number, round: 'up' | 'down'): number {
  if (typeof value === 'number') return value;
  const pct = Number(value.replace(/%$/, ''));
  const exact = (pct / 100) * replicas;
  return round === 'up' ? Math.ceil(exact) : Math.floor(exact);
}
