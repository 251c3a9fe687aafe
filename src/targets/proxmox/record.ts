/**
 * What marks a VM as KubeDos's: its tags and, in its description, a one-line JSON record of the
 * node id, labels and public identity (the proof of ownership; see ./driver.ts). Pure.
 */
import type { NodeLabels } from '../driver';
import type { PublicIdentity } from '../identity';

/** The tag every KubeDos VM carries (the description record is the proof; the tag is for people and filters). */
export const KUBEDOS_TAG = 'kubedos';

/** What the description of a KubeDos VM records: the proof of ownership, and the node's public identity. */
export interface VmRecord {
  kubedos: 1;
  nodeId: string;
  labels: NodeLabels;
  identity: PublicIdentity;
}

/**
 * The description of a VM: its record as one line of JSON. `qm config` prints descriptions
 * through PVE::Tools::encode_text, which percent-encodes control, non-ASCII bytes and `:` but
 * leaves `%` alone; so no literal `%` is written (JSON's `\u0025` instead) and decoding is exact.
 */
export function encodeDescription(record: VmRecord): string {
  return JSON.stringify(record).replace(/%/g, '\\u0025');
}

/** The record in a description as `qm config` prints it; undefined when it is not one of ours. */
export function decodeDescription(printed: string | undefined): VmRecord | undefined {
  if (!printed) return undefined;
  const bytes: number[] = [];
  for (let i = 0; i < printed.length; i++) {
    const m = printed[i] === '%' ? /^[0-9A-Fa-f]{2}$/.exec(printed.slice(i + 1, i + 3)) : null;
    if (m) {
      bytes.push(parseInt(m[0], 16));
      i += 2;
    } else {
      bytes.push(...Buffer.from(printed[i]!, 'utf8'));
    }
  }
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    return undefined;
  }
  const r = value as Partial<VmRecord> | null;
  const labels = r?.labels as Partial<NodeLabels> | undefined;
  const identity = r?.identity as Partial<PublicIdentity> | undefined;
  if (!r || r.kubedos !== 1 || typeof r.nodeId !== 'string' || !labels || !identity) return undefined;
  if (typeof labels.platform !== 'string' || typeof labels.fleet !== 'string' || typeof labels.generation !== 'number') return undefined;
  if (typeof labels.image !== 'string' || typeof labels.imageDigest !== 'string') return undefined;
  if (typeof identity.hostname !== 'string' || typeof identity.machineId !== 'string' || typeof identity.hostKeyPublic !== 'string') return undefined;
  return r as VmRecord;
}

/** Tags of a config (`;`, `,` or space separated), lowercase. */
export function tagsOf(value: string | undefined): string[] {
  return (value ?? '').split(/[;, ]+/).filter(Boolean).map((t) => t.toLowerCase());
}

/** A value as a Proxmox tag (`[a-z0-9_][a-z0-9_+.-]*`): other characters become `_`. */
export function proxmoxTag(value: string): string {
  const t = value.toLowerCase().replace(/[^a-z0-9_+.-]/g, '_');
  return /^[a-z0-9_]/.test(t) ? t : `_${t}`;
}

/** The tags of a node's VM: `kubedos;platform-…;fleet-…;gen-…`. */
export function vmTags(labels: NodeLabels): string {
  return [KUBEDOS_TAG, `platform-${proxmoxTag(labels.platform)}`, `fleet-${proxmoxTag(labels.fleet)}`, `gen-${labels.generation}`].join(';');
}
