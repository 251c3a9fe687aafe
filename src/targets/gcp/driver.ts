/**
 * The Google Cloud target: one Compute Engine instance per node, in one project and zone, from an
 * image imported from the image's tar.gz.
 *
 * - prepare: the tar.gz goes to `gs://<bucket>/kubedos/<sha256>.tar.gz` by a resumable upload
 *   (upload.ts), then `images.insert` makes `kubedos-<image>-<sha12>` from it with the guest OS
 *   features the gce format needs (UEFI_COMPATIBLE, VIRTIO_SCSI_MULTIQUEUE, GVNIC), labelled
 *   `kubedos=image` and `kubedos-sha256=<first 63 hex digits>` and described with the whole
 *   digest; it is found again by that label (and checked against the description). A repeat is a
 *   list call.
 * - create: an instance named after the node id, with the node's NoCloud user-data (the same
 *   `#cloud-config` a cidata seed holds) as the `user-data` metadata key (what cloud-init's GCE
 *   datasource reads; the image's gce reader, src/foundry/gce-reader.ts, reads the same key from
 *   the metadata server before sshd), a `kubedos-record` metadata key with the node id, labels and
 *   public identity, labels for filtering (kubedos=node, platform, fleet, generation), a gVNIC,
 *   and a boot disk of the same name that is deleted with the instance (autoDelete). The insert
 *   carries a request id derived from the node id and its identity, so a retried request is not
 *   doubled; the zone operation's name is heartbeated, so a retried activity waits for that
 *   operation instead of inserting again; an instance that exists for the node is kept and the
 *   identity its record holds returned. Compute Engine starts an instance when it creates it.
 * - start: starts a TERMINATED or STOPPED instance; nothing for a running one.
 * - readiness: `kubedos: ready <hostname>` in serial port 1's output.
 * - address: the internal IP, or the external one with `externalIp`.
 * - destroy: the instance (its boot disk goes with it), then a leftover boot disk of the node's
 *   name labelled for it. Nothing unlabelled is ever touched.
 * - list: instances of the zone labelled `kubedos=node`, with their labels from the record.
 *
 * Instances, not a managed instance group: each node has its own identity in its own metadata,
 * its own name derived from the node id, and its own life (created, health-checked, destroyed and
 * replaced one at a time by the fleet's workflows); a MIG would add a second owner of rollouts
 * (its update policy and instance template) and give every instance the template's metadata.
 */
import { createHash } from 'node:crypto';
import type { protos } from '@google-cloud/compute';
import { ArtifactRequiredError, GcpResourceNotOwnedError, GcpUnavailableError, NodeAddressUnknownError, NodeImageConflictError, NodeNotRunningError, TargetNodeNotFoundError } from '../../errors';
import { GCE_IMPORT } from '../../foundry/formats/gce';
import { logger } from '../../log';
import { resumedOperation, type CreateNodeRequest, type DriverContext, type DriverEnvironment, type ImageSource, type NodeAddress, type NodeLabels, type OwnedNode, type PreparedImage, type TargetDriver } from '../driver';
import { sleep } from '../driver-support';
import { consoleReady, publicPart, type PublicIdentity } from '../identity';
import { renderNocloud } from '../nocloud';
import { closeGcp, connectGcp, type GcpConnection } from './clients';
import { gcpFailure, isGcpNotFound, type GcpFailureContext } from './failures';
import { gcp, type GcpTargetSpec } from './index';
import { uploadObject } from './upload';

type IInstance = protos.google.cloud.compute.v1.IInstance;
type IOperation = protos.google.cloud.compute.v1.IOperation;
type IImage = protos.google.cloud.compute.v1.IImage;

/** Metadata keys and labels KubeDos writes. */
export const KEY = { userData: 'user-data', record: 'kubedos-record' } as const;
export const LABEL = { kind: 'kubedos', node: 'kubedos-node', platform: 'kubedos-platform', fleet: 'kubedos-fleet', generation: 'kubedos-generation', sha256: 'kubedos-sha256', image: 'kubedos-image' } as const;

/** Heartbeat period while an operation runs (the create activity's heartbeat timeout is 20 s). */
const HEARTBEAT_MS = 5_000;

export interface GcpDriverOptions {
  /** Poll interval of operations. @default 3000 */
  pollIntervalMs?: number;
}

/** What the `kubedos-record` metadata of a node's instance holds. */
export interface GcpNodeRecord {
  kubedos: 1;
  nodeId: string;
  labels: NodeLabels;
  identity: PublicIdentity;
}

function checkNodeId(nodeId: string): void {
  if (!/^[a-z0-9]([a-z0-9.-]{0,198}[a-z0-9])?$/.test(nodeId)) throw new TypeError(`invalid node id ${JSON.stringify(nodeId)}`);
}

const shortHash = (value: string) => createHash('sha256').update(value).digest('hex').slice(0, 8);

/** A Compute Engine name (RFC 1035, ≤ 63) for a node id: '.' as '-', shortened with a hash when too long. */
export function instanceNameOf(nodeId: string): string {
  let name = nodeId.replace(/\./g, '-');
  if (!/^[a-z]/.test(name)) name = `n-${name}`;
  if (name.length <= 63) return name;
  return `${name.slice(0, 54).replace(/-+$/, '')}-${shortHash(nodeId)}`;
}

export function imageNameOf(image: string, sha256: string): string {
  return `kubedos-${image.slice(0, 40).replace(/-+$/, '')}-${sha256.slice(0, 12)}`;
}

/** A label value: lowercase letters, digits, '_' and '-', at most 63. */
export function labelValue(value: string): string {
  const v = value.toLowerCase().replace(/[^a-z0-9_-]/g, '_');
  return v.length <= 63 ? v : `${v.slice(0, 54)}-${shortHash(value)}`;
}

/** A request id (a UUID, as Compute Engine requires) derived from `seed`: the same request, the same id. */
export function requestIdOf(seed: string): string {
  const h = createHash('sha256').update(seed).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

export function regionOf(zone: string): string {
  return zone.replace(/-[a-z]$/, '');
}

export function parseRecord(instance: IInstance | undefined): GcpNodeRecord | undefined {
  if (instance?.labels?.[LABEL.kind] !== 'node') return undefined;
  const value = instance.metadata?.items?.find((i) => i.key === KEY.record)?.value;
  if (!value) return undefined;
  try {
    const r = JSON.parse(value) as Partial<GcpNodeRecord>;
    const l = r.labels as Partial<NodeLabels> | undefined;
    const id = r.identity as Partial<PublicIdentity> | undefined;
    if (r.kubedos !== 1 || typeof r.nodeId !== 'string' || !l || !id) return undefined;
    if (typeof l.platform !== 'string' || typeof l.fleet !== 'string' || typeof l.generation !== 'number' || typeof l.image !== 'string' || typeof l.imageDigest !== 'string') return undefined;
    if (typeof id.hostname !== 'string' || typeof id.machineId !== 'string' || typeof id.hostKeyPublic !== 'string' || typeof id.hostKeyFingerprint !== 'string') return undefined;
    return r as GcpNodeRecord;
  } catch {
    return undefined;
  }
}

/** The instance body of a node (pure; the stand-in tests check it against the API). */
export function instanceBody(spec: GcpTargetSpec, o: { name: string; sourceImage: string; userData: string; record: GcpNodeRecord }): IInstance {
  const labels = {
    [LABEL.kind]: 'node',
    [LABEL.node]: o.name,
    [LABEL.platform]: labelValue(o.record.labels.platform),
    [LABEL.fleet]: labelValue(o.record.labels.fleet),
    [LABEL.generation]: String(o.record.labels.generation),
  };
  const network = spec.network.includes('/') ? spec.network : `global/networks/${spec.network}`;
  const subnetwork = spec.subnetwork ? (spec.subnetwork.includes('/') ? spec.subnetwork : `regions/${regionOf(spec.zone)}/subnetworks/${spec.subnetwork}`) : undefined;
  return {
    name: o.name,
    machineType: `zones/${spec.zone}/machineTypes/${spec.machineType}`,
    labels,
    metadata: { items: [{ key: KEY.userData, value: o.userData }, { key: KEY.record, value: JSON.stringify(o.record) }] },
    disks: [
      {
        boot: true,
        autoDelete: true,
        type: 'PERSISTENT',
        deviceName: 'boot',
        initializeParams: {
          diskName: o.name,
          sourceImage: o.sourceImage,
          diskType: `zones/${spec.zone}/diskTypes/${spec.diskType}`,
          ...(spec.diskSizeGb ? { diskSizeGb: spec.diskSizeGb } : {}),
          labels,
        },
      },
    ],
    networkInterfaces: [
      {
        network,
        ...(subnetwork ? { subnetwork } : {}),
        nicType: 'GVNIC',
        ...(spec.externalIp ? { accessConfigs: [{ name: 'External NAT', type: 'ONE_TO_ONE_NAT', networkTier: 'PREMIUM' }] } : {}),
      },
    ],
    // UEFI without Secure Boot: the image's unified kernel image is not signed by Microsoft's UEFI CA.
    shieldedInstanceConfig: { enableSecureBoot: false, enableVtpm: true, enableIntegrityMonitoring: true },
    scheduling: { automaticRestart: true, onHostMaintenance: 'MIGRATE' },
  };
}

/** What a heartbeat carries about a Compute Engine operation. */
function encodeOperation(key: string, name: string): string {
  return JSON.stringify({ gce: key, operation: name });
}

function previousOperation(ctx: DriverContext, key: string): string | undefined {
  const op = resumedOperation(ctx.previous);
  if (!op) return undefined;
  try {
    const p = JSON.parse(op) as { gce?: unknown; operation?: unknown };
    return p.gce === key && typeof p.operation === 'string' && /^[a-z0-9-]{1,63}$/.test(p.operation) ? p.operation : undefined;
  } catch {
    return undefined;
  }
}

export class GcpDriver implements TargetDriver {
  readonly type = 'gcp' as const;
  private connection?: GcpConnection;
  private readonly pollMs: number;
  private readonly failure: GcpFailureContext;

  constructor(
    readonly name: string,
    private readonly spec: GcpTargetSpec,
    // Every fact is on Google Cloud (labels, metadata, operations, heartbeats): nothing is kept locally.
    _env: DriverEnvironment,
    options: GcpDriverOptions = {},
  ) {
    this.pollMs = options.pollIntervalMs ?? 3_000;
    this.failure = { target: name, project: spec.project, zone: spec.zone, bucket: spec.bucket };
  }

  private get gc(): GcpConnection {
    this.connection ??= connectGcp(this.spec.project);
    return this.connection;
  }

  private async call<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw gcpFailure(err, operation, this.failure);
    }
  }

  private async maybe<T>(operation: string, fn: () => Promise<T>): Promise<T | undefined> {
    return this.call(operation, async () => {
      try {
        return await fn();
      } catch (err) {
        if (isGcpNotFound(err)) return undefined;
        throw err;
      }
    });
  }

  private get project(): string {
    return this.spec.project;
  }

  /**
   * Wait for an operation with heartbeats naming it (`key`); its error, when it ends with one, is
   * thrown as the KubeDos error of its class.
   */
  private async awaitOperation(op: IOperation | string, scope: 'zone' | 'global', key: string, step: string, ctx: DriverContext): Promise<IOperation> {
    const name = typeof op === 'string' ? op : op.name!;
    let current: IOperation | undefined = typeof op === 'string' ? undefined : op;
    const beat = () => ctx.progress?.({ step, resume: { operation: encodeOperation(key, name) } });
    beat();
    const timer = setInterval(beat, HEARTBEAT_MS);
    try {
      while (current?.status !== 'DONE') {
        ctx.signal?.throwIfAborted();
        if (current) await sleep(this.pollMs, ctx.signal);
        current = await this.call(`${step} (operation ${name})`, async () =>
          scope === 'zone'
            ? (await this.gc.zoneOperations.get({ project: this.project, zone: this.spec.zone, operation: name }, { timeout: 30_000 }))[0]
            : (await this.gc.globalOperations.get({ project: this.project, operation: name }, { timeout: 30_000 }))[0],
        );
      }
    } finally {
      clearInterval(timer);
    }
    const first = current.error?.errors?.[0];
    if (first) {
      throw gcpFailure({ code: current.httpErrorStatusCode ?? undefined, message: first.message ?? 'the operation failed', errors: current.error!.errors }, `${step} (operation ${name})`, this.failure);
    }
    return current;
  }

  // --- prepare ---------------------------------------------------------------------------------

  async prepare(image: ImageSource, ctx: DriverContext): Promise<PreparedImage> {
    const artifact = image.artifact;
    if (!artifact) throw new ArtifactRequiredError(this.name, 'gcp', gcp.accepts);
    if (artifact.format !== 'gce') throw new ArtifactRequiredError(this.name, 'gcp', gcp.accepts, artifact.format);
    if (!/^[0-9a-f]{64}$/.test(artifact.sha256)) throw new TypeError(`invalid artifact sha256 ${JSON.stringify(artifact.sha256)}`);
    const objectName = `kubedos/${artifact.sha256}.tar.gz`;
    const step = `upload ${image.name} to gs://${this.spec.bucket}/${objectName}`;
    const object = this.gc.storage.bucket(this.spec.bucket).file(objectName);
    const uploaded = await this.call(step, () => uploadObject(object, artifact, step, ctx));
    logger.info({ target: this.name, ...uploaded }, 'gcp image tar.gz uploaded');

    const found = await this.findImage(artifact.sha256);
    if (found?.status === 'READY') return { digest: image.digest, location: `projects/${this.project}/global/images/${found.name}` };
    const imageName = found?.name ?? imageNameOf(image.name, artifact.sha256);
    const key = `insert-image:${imageName}`;
    const create = `insert image ${imageName}`;
    const previous = previousOperation(ctx, key);
    if (previous) await this.awaitOperation(previous, 'global', key, create, ctx);
    else if (!found) {
      const body: IImage = {
        name: imageName,
        description: `KubeDos image ${image.name}: sha256:${artifact.sha256} (publication ${image.digest})`,
        labels: { [LABEL.kind]: 'image', [LABEL.sha256]: artifact.sha256.slice(0, 63), [LABEL.image]: labelValue(image.name) },
        rawDisk: { source: `https://storage.googleapis.com/${this.spec.bucket}/${objectName}` },
        guestOsFeatures: GCE_IMPORT.guestOsFeatures.map((type) => ({ type })),
        architecture: GCE_IMPORT.architecture,
      };
      const op = await this.call(create, async () => {
        try {
          const [lro] = await this.gc.images.insert({ project: this.project, imageResource: body, requestId: requestIdOf(`image:${this.project}:${artifact.sha256}`) });
          return lro.latestResponse as IOperation;
        } catch (err) {
          if ((err as { code?: number }).code === 409) return undefined; // made meanwhile by another worker
          throw err;
        }
      });
      if (op) await this.awaitOperation(op, 'global', key, create, ctx);
    }
    // Until the image is READY (PENDING while Compute Engine imports it).
    for (;;) {
      ctx.progress?.({ step: create });
      const [got] = await this.call(`get image ${imageName}`, () => this.gc.images.get({ project: this.project, image: imageName }));
      if (got.status === 'READY') break;
      if (got.status === 'FAILED') throw new GcpUnavailableError(this.name, create, 'IMAGE_FAILED', undefined, `image ${imageName} failed to import`, 'retried: the import is started again after the failed image is deleted by hand (gcloud compute images delete)');
      await sleep(this.pollMs, ctx.signal);
    }
    logger.info({ target: this.name, image: imageName }, 'gcp image ready');
    return { digest: image.digest, location: `projects/${this.project}/global/images/${imageName}` };
  }

  /** The image of an artifact, by its label and its description's digest. */
  private async findImage(sha256: string): Promise<IImage | undefined> {
    return this.call('list images', async () => {
      for await (const img of this.gc.images.listAsync({ project: this.project, filter: `labels.${LABEL.sha256} = ${sha256.slice(0, 63)}` })) {
        if (img.labels?.[LABEL.kind] === 'image' && img.description?.includes(`sha256:${sha256}`) && img.status !== 'FAILED') return img;
      }
      return undefined;
    });
  }

  // --- nodes -----------------------------------------------------------------------------------

  private async getInstance(name: string): Promise<IInstance | undefined> {
    return this.maybe(`get instance ${name}`, async () => (await this.gc.instances.get({ project: this.project, zone: this.spec.zone, instance: name }))[0]);
  }

  private async ownedInstance(nodeId: string): Promise<{ instance: IInstance; record: GcpNodeRecord; name: string } | undefined> {
    const name = instanceNameOf(nodeId);
    const instance = await this.getInstance(name);
    if (!instance) return undefined;
    const record = parseRecord(instance);
    if (!record || record.nodeId !== nodeId) throw new GcpResourceNotOwnedError(this.name, `instances/${name}`, nodeId);
    return { instance, record, name };
  }

  async create(request: CreateNodeRequest, ctx: DriverContext): Promise<PublicIdentity> {
    const { nodeId, labels, identity } = request;
    checkNodeId(nodeId);
    if (!/^projects\/[a-z][a-z0-9-]+\/global\/images\/[a-z][-a-z0-9]*$/.test(request.image.location)) {
      throw new TypeError(`image location ${JSON.stringify(request.image.location)} is not a Compute Engine image of ${this.name}`);
    }
    const name = instanceNameOf(nodeId);
    const key = `insert-instance:${name}`;
    const step = `insert instance ${name}`;
    const previous = previousOperation(ctx, key);
    if (previous) await this.awaitOperation(previous, 'zone', key, step, ctx);
    for (let tries = 0; ; tries++) {
      const existing = await this.ownedInstance(nodeId);
      if (existing) {
        if (existing.record.labels.imageDigest !== labels.imageDigest) throw new NodeImageConflictError(`${this.name} (instance ${name})`, nodeId, existing.record.labels.imageDigest);
        return existing.record.identity;
      }
      if (tries > 0) throw new GcpUnavailableError(this.name, step, 'alreadyExists', 409, `instance ${name} exists but cannot be read`, 'transient: retried');
      const record: GcpNodeRecord = { kubedos: 1, nodeId, labels, identity: publicPart(identity) };
      const body = instanceBody(this.spec, { name, sourceImage: request.image.location, userData: renderNocloud({ instanceId: nodeId, identity, authorizedKeys: request.authorizedKeys })['user-data'], record });
      const op = await this.call(step, async () => {
        try {
          const [lro] = await this.gc.instances.insert({ project: this.project, zone: this.spec.zone, instanceResource: body, requestId: requestIdOf(`instance:${nodeId}:${identity.machineId}`) });
          return lro.latestResponse as IOperation;
        } catch (err) {
          // Inserted by an earlier attempt whose answer was lost: read it back.
          if ((err as { code?: number }).code === 409) return undefined;
          throw err;
        }
      });
      if (!op) continue;
      await this.awaitOperation(op, 'zone', key, step, ctx);
      logger.info({ target: this.name, nodeId, instance: name }, 'gcp instance created');
      return publicPart(identity);
    }
  }

  async start(nodeId: string, ctx: DriverContext): Promise<void> {
    checkNodeId(nodeId);
    const owned = await this.ownedInstance(nodeId);
    if (!owned) throw new TargetNodeNotFoundError(this.name, nodeId, 'start');
    const status = owned.instance.status ?? '';
    if (status !== 'TERMINATED' && status !== 'STOPPED' && status !== 'SUSPENDED') return;
    const step = `start instance ${owned.name}`;
    const [lro] = await this.call(step, () => this.gc.instances.start({ project: this.project, zone: this.spec.zone, instance: owned.name, requestId: requestIdOf(`start:${nodeId}:${owned.instance.id ?? ''}:${owned.instance.lastStopTimestamp ?? ''}`) }));
    await this.awaitOperation(lro.latestResponse as IOperation, 'zone', `start-instance:${owned.name}`, step, ctx);
  }

  async address(nodeId: string, _ctx: DriverContext): Promise<NodeAddress> {
    checkNodeId(nodeId);
    const owned = await this.ownedInstance(nodeId);
    if (!owned) throw new TargetNodeNotFoundError(this.name, nodeId, 'locate');
    const nic = owned.instance.networkInterfaces?.[0];
    const host = this.spec.externalIp ? nic?.accessConfigs?.[0]?.natIP : nic?.networkIP;
    if (!host) throw new NodeAddressUnknownError(this.name, nodeId, `instance ${owned.name} has no ${this.spec.externalIp ? 'external' : 'internal'} IP yet`);
    return { host, ports: { 22: 22 } };
  }

  /** Serial port 1 of an instance. */
  async serialLog(name: string): Promise<string> {
    const got = await this.maybe(`read the serial port of ${name}`, async () => (await this.gc.instances.getSerialPortOutput({ project: this.project, zone: this.spec.zone, instance: name, port: 1 }))[0]);
    return got?.contents ?? '';
  }

  async readiness(nodeId: string, _ctx: DriverContext): Promise<boolean> {
    checkNodeId(nodeId);
    const owned = await this.ownedInstance(nodeId);
    if (!owned) throw new TargetNodeNotFoundError(this.name, nodeId, 'check');
    const log = await this.serialLog(owned.name);
    if (consoleReady(log, owned.record.identity.hostname)) return true;
    const status = owned.instance.status ?? '';
    if (status === 'TERMINATED' || status === 'STOPPED' || status === 'STOPPING' || status === 'SUSPENDED') {
      throw new NodeNotRunningError(nodeId, this.name, log.trimEnd().split('\n').slice(-15).join('\n'));
    }
    return false;
  }

  async destroy(nodeId: string, ctx: DriverContext): Promise<void> {
    checkNodeId(nodeId);
    const name = instanceNameOf(nodeId);
    const key = `delete-instance:${name}`;
    const step = `delete instance ${name}`;
    const previous = previousOperation(ctx, key);
    if (previous) await this.awaitOperation(previous, 'zone', key, step, ctx);
    const instance = await this.getInstance(name);
    if (instance) {
      const record = parseRecord(instance);
      if (!record || record.nodeId !== nodeId) {
        logger.warn({ target: this.name, nodeId, instance: name }, 'gcp destroy: an instance of that name exists but is not this node\'s; left alone');
        return;
      }
      const op = await this.maybe(step, async () => (await this.gc.instances.delete({ project: this.project, zone: this.spec.zone, instance: name, requestId: requestIdOf(`delete:${nodeId}:${instance.id ?? ''}`) }))[0].latestResponse as IOperation);
      if (op) await this.awaitOperation(op, 'zone', key, step, ctx);
      logger.info({ target: this.name, nodeId, instance: name }, 'gcp instance deleted');
    }
    // A boot disk autoDelete did not take (an instance deleted by hand with --keep-disks, an insert that failed late).
    const disk = await this.maybe(`get disk ${name}`, async () => (await this.gc.disks.get({ project: this.project, zone: this.spec.zone, disk: name }))[0]);
    if (disk && disk.labels?.[LABEL.kind] === 'node' && disk.labels?.[LABEL.node] === name && (disk.users ?? []).length === 0) {
      const op = await this.maybe(`delete disk ${name}`, async () => (await this.gc.disks.delete({ project: this.project, zone: this.spec.zone, disk: name }))[0].latestResponse as IOperation);
      if (op) await this.awaitOperation(op, 'zone', `delete-disk:${name}`, `delete disk ${name}`, ctx);
    }
  }

  async list(filter: { platform?: string; fleet?: string }, _ctx: DriverContext): Promise<OwnedNode[]> {
    const out: OwnedNode[] = await this.call('list instances', async () => {
      const nodes: OwnedNode[] = [];
      for await (const instance of this.gc.instances.listAsync({ project: this.project, zone: this.spec.zone, filter: `labels.${LABEL.kind} = node` })) {
        const record = parseRecord(instance);
        if (!record || instance.name !== instanceNameOf(record.nodeId)) continue;
        if (filter.platform && record.labels.platform !== filter.platform) continue;
        if (filter.fleet && record.labels.fleet !== filter.fleet) continue;
        const status = instance.status ?? '';
        nodes.push({ nodeId: record.nodeId, labels: record.labels, identity: record.identity, running: ['PROVISIONING', 'STAGING', 'RUNNING'].includes(status) });
      }
      return nodes;
    });
    return out.sort((a, b) => a.nodeId.localeCompare(b.nodeId));
  }

  async close(): Promise<void> {
    if (this.connection) await closeGcp(this.connection);
    this.connection = undefined;
  }
}
