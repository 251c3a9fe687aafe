/**
 * One interface for every substrate nodes run on. A driver makes an artifact present on its host
 * (once per digest), creates nodes from it with their own identity, starts, locates, checks and
 * destroys them, and lists the nodes KubeDos owns there (labelled with fleet and generation) so
 * orphans can be found. A new substrate is one new file implementing this and one registry line
 * in ./registry.ts (see ./descriptor.ts). Every method is idempotent: activities may be retried at any point.
 */
import type { TargetType } from './index';
import type { NodeIdentity, PublicIdentity } from './identity';

/** Labels every node carries, on the substrate itself (VM name/notes, state files). */
export interface NodeLabels {
  platform: string;
  fleet: string;
  generation: number;
  /** Image name and the digest the node was made from. */
  image: string;
  imageDigest: string;
}

/** The artifact a driver deploys, already verified against its signed manifest. */
export interface ImageSource {
  name: string;
  /** Digest that identifies the image: the signed publication's digest, or the plan digest for hollow nodes. */
  digest: string;
  /** The artifact in the driver's format, when the driver needs bytes. */
  artifact?: {
    format: string;
    sha256: string;
    size: number;
    /** Local, verified copy. */
    path: string;
    /** Every file of the format, the one above first, each a verified local copy (a bundle such as `pxe` has several). */
    files?: readonly ArtifactFile[];
  };
}

/** One verified file of an artifact bundle. */
export interface ArtifactFile {
  /** Its name in the build output (what the bundle's own files call it). */
  file: string;
  sha256: string;
  size: number;
  path: string;
}

/** What `prepare` leaves on the host: the driver's handle on the base image. */
export interface PreparedImage {
  digest: string;
  /** Driver-specific location of the base (a path on the host, a template id, …). */
  location: string;
}

export interface CreateNodeRequest {
  nodeId: string;
  labels: NodeLabels;
  image: PreparedImage;
  identity: NodeIdentity;
  authorizedKeys: string[];
}

/** How to reach a node's guest: host address and guest-port → reachable-port map. */
export interface NodeAddress {
  host: string;
  ports: Record<number, number>;
}

export interface OwnedNode {
  nodeId: string;
  labels: NodeLabels;
  identity?: PublicIdentity;
  running: boolean;
}

/** What a driver reports during a long operation; activities heartbeat it. */
export interface ProgressDetail {
  step: string;
  done?: number;
  total?: number;
  /**
   * What a retry of the same step may continue from instead of starting again (an upload
   * checkpoint, a cloud task id, an operation's name or poller state; never a secret): it comes
   * back in `DriverContext.previous`.
   */
  resume?: Record<string, unknown>;
}

/** The operation handle (`resume.operation`) the previous attempt heartbeated, if any. */
export function resumedOperation(previous: ProgressDetail | undefined): string | undefined {
  const op = previous?.resume?.operation;
  return typeof op === 'string' ? op : undefined;
}

/** Passed to every call: cancellation, liveness and progress reporting. */
export interface DriverContext {
  signal?: AbortSignal;
  /** Called during long operations (uploads, conversions, cloud imports); activities heartbeat from it. */
  progress?: (detail: ProgressDetail) => void;
  /**
   * The last progress the previous attempt of the same step reported (its heartbeat details),
   * when the step is being retried: a worker killed mid-operation continues from its `resume`.
   */
  previous?: ProgressDetail;
}

/** What `pruneImages` removed (or would leave): the driver's own words for each thing. */
export interface PrunedImages {
  removed: string[];
  /** Still used by nodes (of any fleet), so kept. */
  kept: string[];
}

export interface TargetDriver {
  readonly type: TargetType;
  /** Make the image present on the host, once per digest; a repeat is a cheap check. */
  prepare(image: ImageSource, ctx: DriverContext): Promise<PreparedImage>;
  /**
   * Create (not start) a node with the given identity. When a node with this id already exists
   * from the same image (a retried activity), it is kept and the identity it really has returned.
   */
  create(request: CreateNodeRequest, ctx: DriverContext): Promise<PublicIdentity>;
  start(nodeId: string, ctx: DriverContext): Promise<void>;
  address(nodeId: string, ctx: DriverContext): Promise<NodeAddress>;
  /** Whether the image's readiness unit has reported (console line or metadata callback). */
  readiness(nodeId: string, ctx: DriverContext): Promise<boolean>;
  /** Stop and remove the node and everything made for it; an absent node is not an error. */
  destroy(nodeId: string, ctx: DriverContext): Promise<void>;
  /** Nodes KubeDos owns on this target, optionally only one fleet's. */
  list(filter: { platform?: string; fleet?: string }, ctx: DriverContext): Promise<OwnedNode[]>;
  /**
   * Remove the prepared images KubeDos made on this target (cloud images and their snapshots)
   * that no node uses any more; for drivers whose prepared images cost something where they are.
   */
  pruneImages?(ctx: DriverContext): Promise<PrunedImages>;
  /** Release connections; the nodes keep running. */
  close?(): Promise<void>;
}

/** Where drivers keep local state (disks, seeds, pid files), per target. */
export interface DriverEnvironment {
  /** e.g. $KUBEDOS_HOME/targets/<target name> */
  stateDir: string;
}
