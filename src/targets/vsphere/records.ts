/**
 * What KubeDos writes on the VMs it makes, and reads back to know they are its own.
 *
 * - The annotation (vSphere's "Notes") holds a one-line JSON record: a node's id and labels
 *   (platform, fleet, generation, image, image digest), or an image's digest and import state.
 *   It is set in the call that makes the VM where govc allows (`vm.create -annotation`, the OVA
 *   import's options); a vCenter clone gets it in the reconfigure right after the clone, and until
 *   then its reserved name (`cloneName`) is what says whose it is.
 * - extraConfig `kubedos.identity` holds the node's public identity (hostname, machine-id, host
 *   key and fingerprint), set together with the guestinfo documents in one reconfigure; a node
 *   record without it is a node whose create was interrupted before its identity was given.
 *
 * A VM is KubeDos's only when it is in the folder KubeDos owns and its annotation parses as such a
 * record; one edited by hand is an orphan nobody touches.
 */
import { createHash } from 'node:crypto';
import type { NodeLabels } from '../driver';
import type { PublicIdentity } from '../identity';

/** The extraConfig key holding a node's public identity. */
export const IDENTITY_KEY = 'kubedos.identity';
/** Snapshot of a template that linked clones are made from. */
export const BASE_SNAPSHOT = 'kubedos-base';
/** Name of an image's template: the artifact's sha256. */
export const templateName = (sha256: string) => `kubedos-image-${sha256}`;
/**
 * Reserved name of a node's clone until its record is set and it is renamed to the node id (govc
 * cannot clone and annotate in one call): a VM by this name in KubeDos's folder is that node's.
 */
export const cloneName = (nodeId: string) => `kubedos-clone-${createHash('sha256').update(nodeId).digest('hex').slice(0, 24)}`;
/** Name of an import in progress (unique per attempt; renamed to templateName when complete). */
export const importName = (sha256: string, attempt: string) => `kubedos-import-${sha256.slice(0, 16)}-${attempt}`;

export interface NodeRecord {
  kubedos: 1;
  kind: 'node';
  nodeId: string;
  labels: NodeLabels;
}

export interface ImageRecord {
  kubedos: 1;
  kind: 'image';
  /** sha256 of the OVA the template was imported from. */
  sha256: string;
  image: string;
  /** The image digest it was first prepared for (a publication's). */
  digest: string;
  state: 'importing' | 'ready';
  /** ms since the epoch, when the import started. */
  startedAt: number;
  /** `host:pid:attempt` of the import, to tell a dead one from one still running. */
  owner: string;
}

function parse(annotation: string): Record<string, unknown> | undefined {
  if (!annotation.startsWith('{')) return undefined;
  try {
    const value = JSON.parse(annotation) as unknown;
    return value && typeof value === 'object' && !Array.isArray(value) && (value as { kubedos?: unknown }).kubedos === 1 ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

export function encodeRecord(record: NodeRecord | ImageRecord): string {
  return JSON.stringify(record);
}

/** The node record of an annotation; undefined when it is not one. */
export function nodeRecord(annotation: string): NodeRecord | undefined {
  const r = parse(annotation);
  const labels = r?.labels as Partial<NodeLabels> | undefined;
  if (!r || r.kind !== 'node' || typeof r.nodeId !== 'string' || !labels || typeof labels !== 'object') return undefined;
  if (typeof labels.platform !== 'string' || typeof labels.fleet !== 'string' || typeof labels.generation !== 'number') return undefined;
  if (typeof labels.image !== 'string' || typeof labels.imageDigest !== 'string') return undefined;
  return { kubedos: 1, kind: 'node', nodeId: r.nodeId, labels: { platform: labels.platform, fleet: labels.fleet, generation: labels.generation, image: labels.image, imageDigest: labels.imageDigest } };
}

/** The image record of an annotation; undefined when it is not one. */
export function imageRecord(annotation: string): ImageRecord | undefined {
  const r = parse(annotation);
  if (!r || r.kind !== 'image' || typeof r.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(r.sha256)) return undefined;
  if (r.state !== 'importing' && r.state !== 'ready') return undefined;
  if (typeof r.startedAt !== 'number' || typeof r.owner !== 'string' || typeof r.image !== 'string' || typeof r.digest !== 'string') return undefined;
  return r as unknown as ImageRecord;
}

/** The public identity in a VM's extraConfig; undefined when it has none (yet). */
export function identityOf(extraConfig: Record<string, string>): PublicIdentity | undefined {
  const text = extraConfig[IDENTITY_KEY];
  if (!text) return undefined;
  try {
    const i = JSON.parse(text) as Partial<PublicIdentity>;
    if (typeof i.hostname !== 'string' || typeof i.machineId !== 'string' || typeof i.hostKeyPublic !== 'string' || typeof i.hostKeyFingerprint !== 'string') return undefined;
    return { hostname: i.hostname, machineId: i.machineId, hostKeyPublic: i.hostKeyPublic, hostKeyFingerprint: i.hostKeyFingerprint };
  } catch {
    return undefined;
  }
}
