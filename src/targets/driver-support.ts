/**
 * What several target drivers need around their substrate calls, in one place (drivers never
 * import one another): the node-id rule, progress reports while a long step runs, bounded
 * concurrency over a list, and a sleep that an abort ends.
 */
import type { DriverContext, NodeLabels } from './driver';
import type { PublicIdentity } from './identity';

/**
 * Longest node id: a node id is a directory name on the host (qemu, hollow), so at most NAME_MAX
 * bytes. nodeName() makes ids of up to 63 + 1 + 63 + 1 characters and the ordinal's digits.
 */
const MAX_NODE_ID = 255;
/** Longest DNS label (RFC 1035). */
const MAX_DNS_LABEL = 63;

export interface NodeIdRule {
  /**
   * The id is also used as a DNS name (Proxmox VE's `qm create --name` has format `dns-name`):
   * as node ids have no dots, that is one label of at most 63 characters. Longer ids (long
   * platform and fleet names) are refused on such targets.
   * @default false
   */
  dnsName?: boolean;
}

/**
 * Refuse a node id before it becomes a directory name, a process marker or a VM name.
 *
 * Node ids are made by nodeName() in workflows/fleet-api.ts as `<platform>-<fleet>-<ordinal>`:
 * platform and fleet names are DNS labels that start with a letter (NAME_PATTERN in
 * src/platform/fields.ts), the ordinal is digits. So every node id is lowercase letters, digits
 * and '-', starts with a letter, ends with a letter or digit, and has no dots (so no `..` and no
 * hidden files). That is the rule: the strictest one every such id meets.
 */
export function checkNodeId(nodeId: string, rule: NodeIdRule = {}): void {
  const max = rule.dnsName ? MAX_DNS_LABEL : MAX_NODE_ID;
  if (!/^[a-z](?:[a-z0-9-]*[a-z0-9])?$/.test(nodeId) || nodeId.length > max) {
    throw new TypeError(`invalid node id ${JSON.stringify(nodeId)}${rule.dnsName ? ` (here it names a VM: a DNS label of at most ${MAX_DNS_LABEL} characters)` : ''}`);
  }
}

/**
 * How often a long step is reported again. Activities heartbeat from progress, and the create
 * activity's heartbeat timeout is 20 s: a step over SSH on a loaded host may take much longer.
 */
const PROGRESS_INTERVAL_MS = 5_000;

/** Run `fn`, reporting `step` at once and every few seconds until it settles. */
export async function reporting<T>(ctx: DriverContext, step: string, fn: () => Promise<T>): Promise<T> {
  ctx.progress?.({ step });
  const timer = setInterval(() => ctx.progress?.({ step }), PROGRESS_INTERVAL_MS);
  try {
    return await fn();
  } finally {
    clearInterval(timer);
  }
}

/** `fn` over `items`, at most `limit` at once; the results in the order of `items`. */
export async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** Wait `ms`; rejects with the signal's reason as soon as it aborts (or at once if it has). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => (clearTimeout(t), reject(signal.reason)), { once: true });
  });
}

/** The keys under which a provider's tags hold a node's id, labels and public identity. */
export interface NodeRecordKeys {
  readonly nodeId: string;
  readonly platform: string;
  readonly fleet: string;
  readonly generation: string;
  readonly image: string;
  readonly imageDigest: string;
  readonly hostname: string;
  readonly machineId: string;
  readonly hostKey: string;
  readonly hostKeyFingerprint: string;
}

/** A node's id, labels and public identity as tags under `keys`. */
export function nodeRecordTags(keys: NodeRecordKeys, nodeId: string, labels: NodeLabels, identity: PublicIdentity): Record<string, string> {
  return {
    [keys.nodeId]: nodeId,
    [keys.platform]: labels.platform,
    [keys.fleet]: labels.fleet,
    [keys.generation]: String(labels.generation),
    [keys.image]: labels.image,
    [keys.imageDigest]: labels.imageDigest,
    [keys.hostname]: identity.hostname,
    [keys.machineId]: identity.machineId,
    [keys.hostKey]: identity.hostKeyPublic,
    [keys.hostKeyFingerprint]: identity.hostKeyFingerprint,
  };
}

/** A node's id, labels and public identity read back through `get`; undefined when one is missing or empty, or the generation is not a whole number. */
export function nodeRecordOf(keys: NodeRecordKeys, get: (key: string) => string | undefined): { nodeId: string; labels: NodeLabels; identity: PublicIdentity } | undefined {
  const generation = Number(get(keys.generation));
  const fields = [keys.nodeId, keys.platform, keys.fleet, keys.image, keys.imageDigest, keys.hostname, keys.machineId, keys.hostKey, keys.hostKeyFingerprint].map(get);
  if (fields.some((f) => f === undefined || f === '') || !Number.isInteger(generation)) return undefined;
  const [nodeId, platform, fleet, image, imageDigest, hostname, machineId, hostKeyPublic, hostKeyFingerprint] = fields as string[];
  return {
    nodeId: nodeId!,
    labels: { platform: platform!, fleet: fleet!, generation, image: image!, imageDigest: imageDigest! },
    identity: { hostname: hostname!, machineId: machineId!, hostKeyPublic: hostKeyPublic!, hostKeyFingerprint: hostKeyFingerprint! },
  };
}
