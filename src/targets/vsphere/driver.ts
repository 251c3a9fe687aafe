/**
 * The vSphere target: nodes are VMs on vCenter, or on a standalone ESXi host, made and driven with
 * govc (./govc.ts: one tool runner, the connection and credentials in the child's environment
 * only, the certificate pinned).
 *
 * - prepare: the image's OVA is imported once per artifact digest into the folder KubeDos owns,
 *   under a name of its own attempt (`kubedos-import-<sha>-<attempt>`) whose annotation records
 *   the digest, the state `importing` and who imports it. Then (vCenter) a snapshot
 *   `kubedos-base`, the state `ready`, mark as template, and a rename to `kubedos-image-<sha256>`:
 *   a template by that name whose record is ready is the cheap answer of every later prepare. An
 *   import whose importer died (this host: its process is gone, or it is this process and no longer
 *   running that attempt; another host: older than the prepare activity's time limit) is destroyed
 *   before a new import; a live one elsewhere is left alone, and two imports racing end with one
 *   template (the rename loser destroys its copy).
 * - create: vCenter: ONE `vm.clone` of the template, linked to its snapshot (a delta disk: seconds,
 *   whatever the image size) or full (`clone: full`), powered off, under the node's reserved name
 *   `kubedos-clone-<hash of the node id>` (govc cannot clone and annotate in one call, so the name
 *   is what marks a clone as this node's until its record is on it); then ONE reconfigure: the
 *   node's record in the annotation (platform, fleet, generation, image, digest), CPUs and memory,
 *   guestinfo.metadata/.userdata (+ .encoding, ./guestinfo.ts) from 0600 files, never argv, and
 *   `kubedos.identity` (the public part); then a rename to the node id. A retried create picks up
 *   wherever the first attempt died: a VM by the node id with its record is kept (with its identity,
 *   or given this attempt's), a clone by the reserved name is finished. A racing clone of the same
 *   name fails vCenter's name check and the loser finishes the winner's: never two VMs for one
 *   node. ESXi (no vCenter, no clones): the template's disk is copied on the datastore to
 *   `<node id>/` and a VM created around it with its record in that create call, then the same
 *   reconfigure.
 * - start: power on. readiness: `guestinfo.kubedos.ready` equals the node's hostname (the image's
 *   ready.d hook sets it). The first time the driver sees it, it removes guestinfo.userdata — the
 *   private host key — from the VM's configuration (the node's own info-set would not reach the
 *   stored .vmx). address: VMware Tools' IPv4, answered only once the node is ready (so every
 *   health check runs after readiness, and after the key is gone).
 * - destroy: power off and delete the VM (ESXi: and its directory); a VM whose annotation is not
 *   its record is never touched. list: the VMs of the folder whose annotation is a node record.
 * - Every govc call holds one of the target's `concurrency` slots (per worker).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ArtifactRequiredError, KubedosError, NodeAddressUnknownError, NodeImageConflictError, NodeNotRunningError, TargetNodeNotFoundError, VsphereNotOwnedError } from '../../errors';
import { logger } from '../../log';
import type { CreateNodeRequest, DriverContext, DriverEnvironment, ImageSource, NodeAddress, OwnedNode, PreparedImage, TargetDriver } from '../driver';
import { publicPart, type PublicIdentity } from '../identity';
import { GOVC_TIMEOUT, Govc, govcStderr, isAlreadyExists, isNotFound } from './govc';
import { GUESTINFO_READY_KEY, guestinfoDocuments, SECRET_GUESTINFO_KEYS } from './guestinfo';
import { vsphere, type VsphereTargetSpec } from './index';
import { resolvePlacement, vmAt, vmsIn, type Placement, type VmInfo } from './inventory';
import { BASE_SNAPSHOT, cloneName, encodeRecord, identityOf, IDENTITY_KEY, imageRecord, importName, nodeRecord, templateName, type ImageRecord, type NodeRecord } from './records';

const MiB = 1024 * 1024;
/** An import older than this is dead wherever it ran: the prepare activity's start-to-close is 2 h. */
export const STALE_IMPORT_MS = 3 * 60 * 60_000;

export interface VsphereDriverOptions {
  /** The govc executable. @default 'govc' (on PATH) */
  govc?: string;
}

/** Node ids name VMs (at most 80 characters) and, on ESXi, datastore directories. */
function checkNodeId(nodeId: string): void {
  if (!/^[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?$/.test(nodeId)) throw new TypeError(`invalid node id ${JSON.stringify(nodeId)} (a vSphere VM name of KubeDos: lowercase letters, digits and '-', at most 80)`);
}

/** `[datastore] dir/file.vmdk` → its parts. */
export function datastorePath(text: string): { datastore: string; path: string } | undefined {
  const m = /^\[([^\]]+)\] ?(.+)$/.exec(text);
  return m ? { datastore: m[1]!, path: m[2]! } : undefined;
}

export class VsphereDriver implements TargetDriver {
  readonly type = 'vsphere' as const;
  readonly govc: Govc;
  private placementOnce?: Promise<Placement>;
  /** Imports this process runs (attempt ids), so its own dead ones are told from live ones. */
  private readonly importing = new Set<string>();
  /** prepare() calls in flight, by artifact digest: one import per digest per process. */
  private readonly preparing = new Map<string, Promise<PreparedImage>>();

  constructor(
    readonly name: string,
    readonly spec: VsphereTargetSpec,
    private readonly env: DriverEnvironment,
    options: VsphereDriverOptions = {},
  ) {
    this.govc = new Govc(name, spec, env.stateDir, options.govc);
    this.govc.warnIfInsecure();
  }

  /** Where nodes go, resolved and checked once (a failure is not cached). */
  placement(ctx: DriverContext): Promise<Placement> {
    this.placementOnce ??= resolvePlacement(this.govc, this.name, this.spec, ctx).then((p) => {
      if (!p.vcenter && this.spec.folder !== 'kubedos') logger.info({ target: this.name }, 'ESXi has no VM folders: folder is not used');
      logger.debug({ target: this.name, placement: p }, 'vsphere placement resolved');
      return p;
    });
    this.placementOnce.catch(() => (this.placementOnce = undefined));
    return this.placementOnce;
  }

  private async withSecrets<T>(files: Record<string, string>, use: (paths: Record<string, string>) => Promise<T>): Promise<T> {
    const dir = await mkdtemp(path.join(this.env.stateDir, 'secret-')); // 0700
    try {
      const paths: Record<string, string> = {};
      for (const [key, value] of Object.entries(files)) {
        paths[key] = path.join(dir, key);
        await writeFile(paths[key]!, value, { mode: 0o600 });
      }
      return await use(paths);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  // -------------------------------------------------------------------------------------------
  // prepare

  async prepare(image: ImageSource, ctx: DriverContext): Promise<PreparedImage> {
    const artifact = image.artifact;
    if (!artifact) throw new ArtifactRequiredError(this.name, this.type, vsphere.accepts);
    if (artifact.format !== 'ova') throw new ArtifactRequiredError(this.name, this.type, vsphere.accepts, artifact.format);
    if (!/^[0-9a-f]{64}$/.test(artifact.sha256)) throw new TypeError(`invalid artifact sha256 ${JSON.stringify(artifact.sha256)}`);
    let running = this.preparing.get(artifact.sha256);
    if (!running) {
      running = this.prepareTemplate(image, artifact.path, artifact.sha256, ctx).finally(() => this.preparing.delete(artifact.sha256));
      this.preparing.set(artifact.sha256, running);
    }
    const { location } = await running;
    return { digest: image.digest, location };
  }

  /** Whether an import's importer is gone (see the file comment). */
  private importerDead(record: ImageRecord): boolean {
    const parts = record.owner.split(':');
    const attempt = parts.pop() ?? '';
    const pid = Number(parts.pop());
    const host = parts.join(':');
    if (host === os.hostname() && Number.isInteger(pid) && pid > 0) {
      if (pid === process.pid) return !this.importing.has(attempt);
      try {
        process.kill(pid, 0);
        return false;
      } catch (err) {
        return (err as NodeJS.ErrnoException).code === 'ESRCH';
      }
    }
    return Date.now() - record.startedAt > STALE_IMPORT_MS;
  }

  /** A template usable for clones: its record says ready and (vCenter) it is a template with the base snapshot. */
  private complete(vm: VmInfo, record: ImageRecord, p: Placement): boolean {
    if (record.state !== 'ready') return false;
    if (!p.vcenter) return true;
    return vm.template && vm.snapshots.includes(BASE_SNAPSHOT);
  }

  private async prepareTemplate(image: ImageSource, ova: string, sha256: string, ctx: DriverContext): Promise<PreparedImage> {
    const p = await this.placement(ctx);
    const final = templateName(sha256);
    const location = `${p.folder}/${final}`;
    const ours = (vm: VmInfo) => imageRecord(vm.annotation);
    for (let round = 0; round < 3; round++) {
      const vms = await vmsIn(this.govc, p.folder, ctx);
      const named = vms.find((vm) => vm.name === final);
      if (named) {
        const record = ours(named);
        if (!record || record.sha256 !== sha256) throw new VsphereNotOwnedError(this.name, location, `the template of image ${sha256.slice(0, 12)}`);
        if (this.complete(named, record, p)) return { digest: image.digest, location };
        // Incomplete at the final name: this driver never leaves one; tell whoever made it.
        throw new KubedosError(`target ${this.name}: ${location} is an incomplete template`, 'destroy it by hand; the next deploy imports the OVA again');
      }
      // A complete import not yet renamed (its importer died just before): finish it.
      const finished = [];
      for (const vm of vms) {
        const record = ours(vm);
        if (record?.sha256 === sha256 && vm.name.startsWith(importName(sha256, '')) && (this.complete(vm, record, p))) finished.push(vm);
      }
      if (finished[0]) {
        await this.renameTemplate(finished[0], final, p, ctx);
        continue;
      }
      // Half-made imports whose importer is gone (killed, crashed): removed before importing again.
      for (const vm of vms) {
        const record = ours(vm);
        if (!record || vm.name === final || !vm.name.startsWith('kubedos-import-') || !this.importerDead(record)) continue;
        if (record.state === 'ready' && (this.complete(vm, record, p))) continue; // finished above, or another digest's
        logger.info({ target: this.name, vm: vm.name, owner: record.owner }, 'removing an import whose importer is gone');
        await this.destroyVm(vm, ctx);
      }
      const made = await this.importOva(image, ova, sha256, p, ctx);
      await this.renameTemplate(made, final, p, ctx);
    }
    throw new KubedosError(`target ${this.name}: ${location} did not settle after three rounds of imports`, 'look for other workers importing into the folder', { retryable: true });
  }

  /** Rename a finished import to the template name; the loser of a race destroys its copy. */
  private async renameTemplate(vm: VmInfo, final: string, p: Placement, ctx: DriverContext): Promise<void> {
    try {
      await this.govc.run(['object.rename', vm.ref, final], ctx);
    } catch (err) {
      const winner = await vmAt(this.govc, p.folder, final, ctx);
      const record = winner && imageRecord(winner.annotation);
      if (!winner || !record || !(this.complete(winner, record, p))) throw err;
      logger.info({ target: this.name, template: final }, 'another worker made the template first; removing this copy');
      await this.destroyVm(vm, ctx);
    }
  }

  /** Import the OVA under a name of this attempt, then snapshot, mark ready, make it a template. */
  private async importOva(image: ImageSource, ova: string, sha256: string, p: Placement, ctx: DriverContext): Promise<VmInfo> {
    const attempt = randomBytes(4).toString('hex');
    const name = importName(sha256, attempt);
    const record: ImageRecord = { kubedos: 1, kind: 'image', sha256, image: image.name, digest: image.digest, state: 'importing', startedAt: Date.now(), owner: `${os.hostname()}:${process.pid}:${attempt}` };
    this.importing.add(attempt);
    try {
      const options = { Name: name, Annotation: encodeRecord(record), PowerOn: false, MarkAsTemplate: false, InjectOvfEnv: false, WaitForIP: false, DiskProvisioning: 'thin', NetworkMapping: [] };
      await this.withSecrets({ 'options.json': JSON.stringify(options) }, (files) =>
        this.govc.run(
          ['import.ova', '-options', files['options.json']!, ...(p.vcenter ? ['-folder', p.folder] : []), '-pool', p.pool, ...(p.host ? ['-host', p.host] : []), '-ds', p.datastore, ova],
          ctx,
          { timeoutMs: GOVC_TIMEOUT.import, step: `import ${image.name} (${sha256.slice(0, 12)}) into ${p.datastoreName}` },
        ),
      );
      const vm = await vmAt(this.govc, p.folder, name, ctx);
      if (!vm) throw new KubedosError(`target ${this.name}: the import of ${name} finished but the VM is not in ${p.folder}`);
      if (p.vcenter) await this.govc.run(['snapshot.create', '-vm', vm.ref, BASE_SNAPSHOT], ctx, { timeoutMs: GOVC_TIMEOUT.task });
      await this.govc.run(['vm.change', '-vm', vm.ref, '-annotation', encodeRecord({ ...record, state: 'ready' })], ctx);
      if (p.vcenter) await this.govc.run(['vm.markastemplate', vm.ref], ctx);
      logger.info({ target: this.name, image: image.name, sha256, vm: name }, 'vsphere template imported');
      return vm;
    } finally {
      this.importing.delete(attempt);
    }
  }

  // -------------------------------------------------------------------------------------------
  // nodes

  /** The node's VM, when it is ours; TargetNodeNotFoundError when absent. Checked afresh every time. */
  private async owned(nodeId: string, action: string, ctx: DriverContext): Promise<{ vm: VmInfo; record: NodeRecord; identity?: PublicIdentity }> {
    checkNodeId(nodeId);
    const p = await this.placement(ctx);
    const vm = await vmAt(this.govc, p.folder, nodeId, ctx);
    const record = vm && !vm.template ? nodeRecord(vm.annotation) : undefined;
    if (!vm) throw new TargetNodeNotFoundError(this.name, nodeId, action);
    if (record?.nodeId !== nodeId) throw new VsphereNotOwnedError(this.name, `${p.folder}/${nodeId}`, `node ${nodeId}`);
    return { vm, record, identity: identityOf(vm.extraConfig) };
  }

  async create(request: CreateNodeRequest, ctx: DriverContext): Promise<PublicIdentity> {
    const { nodeId } = request;
    checkNodeId(nodeId);
    const p = await this.placement(ctx);
    const template = request.image.location;
    if (!template.startsWith(`${p.folder}/kubedos-image-`) || !/\/kubedos-image-[0-9a-f]{64}$/.test(template)) {
      throw new TypeError(`image location ${JSON.stringify(template)} is not a prepared template of ${this.name}`);
    }
    const record: NodeRecord = { kubedos: 1, kind: 'node', nodeId, labels: request.labels };
    for (let round = 0; round < 3; round++) {
      const existing = await vmAt(this.govc, p.folder, nodeId, ctx);
      if (existing) return this.adopt(existing, request, p, ctx);
      if (!p.vcenter) {
        try {
          await this.copyNode(template, record, p, ctx);
        } catch (err) {
          if (isAlreadyExists(err)) continue; // made meanwhile: adopt it
          throw err;
        }
        continue;
      }
      // vCenter: clone under the node's reserved name, give it record, shape and identity in one
      // reconfigure, then rename it to the node id (see the file comment).
      const temp = cloneName(nodeId);
      let clone = await vmAt(this.govc, p.folder, temp, ctx);
      if (!clone) {
        try {
          await this.cloneNode(template, temp, p, ctx);
        } catch (err) {
          if (isAlreadyExists(err)) continue; // a racing or earlier attempt's clone: finish it
          throw err;
        }
        clone = await vmAt(this.govc, p.folder, temp, ctx);
        if (!clone) throw new KubedosError(`target ${this.name}: ${temp} was cloned but is not in ${p.folder}`, undefined, { retryable: true });
      }
      return await this.finishClone(clone, request, p, ctx);
    }
    throw new KubedosError(`target ${this.name}: node ${nodeId} did not settle (made and removed meanwhile?)`, undefined, { retryable: true });
  }

  /** A clone under the node's reserved name: KubeDos's when it has no record yet, the template's (inherited), or this node's. */
  private cloneIsOurs(vm: VmInfo, nodeId: string): boolean {
    if (vm.template) return false;
    return !vm.annotation || imageRecord(vm.annotation) !== undefined || nodeRecord(vm.annotation)?.nodeId === nodeId;
  }

  /** Record, shape and identity for a clone (unless it has them), then its node id as its name. */
  private async finishClone(clone: VmInfo, request: CreateNodeRequest, p: Placement, ctx: DriverContext): Promise<PublicIdentity> {
    if (!this.cloneIsOurs(clone, request.nodeId)) throw new VsphereNotOwnedError(this.name, `${p.folder}/${clone.name}`, `the clone of node ${request.nodeId}`);
    const record = nodeRecord(clone.annotation);
    if (record && record.labels.imageDigest !== request.labels.imageDigest) throw new NodeImageConflictError(`${this.name} (${clone.ref})`, request.nodeId, record.labels.imageDigest);
    const identity = (record && identityOf(clone.extraConfig)) || (await this.giveIdentity(clone, request, ctx));
    try {
      await this.govc.run(['object.rename', clone.ref, request.nodeId], ctx);
    } catch (err) {
      // The node's name was taken meanwhile: by another worker finishing this node (keep its VM), or by someone else.
      const other = await vmAt(this.govc, p.folder, request.nodeId, ctx);
      if (!other) throw err;
      if (nodeRecord(other.annotation)?.nodeId !== request.nodeId || other.template) throw new VsphereNotOwnedError(this.name, `${p.folder}/${request.nodeId}`, `node ${request.nodeId}`);
      await this.destroyVm(clone, ctx);
      return this.adopt(other, request, p, ctx);
    }
    logger.info({ target: this.name, nodeId: request.nodeId, vm: clone.ref }, 'vsphere vm created');
    return identity;
  }

  /** Keep an existing VM of this node: its identity if it has one, else this request's. */
  private async adopt(vm: VmInfo, request: CreateNodeRequest, p: Placement, ctx: DriverContext): Promise<PublicIdentity> {
    const record = vm.template ? undefined : nodeRecord(vm.annotation);
    if (record?.nodeId !== request.nodeId) throw new VsphereNotOwnedError(this.name, `${p.folder}/${vm.name}`, `node ${request.nodeId}`);
    if (record.labels.imageDigest !== request.labels.imageDigest) throw new NodeImageConflictError(`${this.name} (${vm.ref})`, request.nodeId, record.labels.imageDigest);
    return identityOf(vm.extraConfig) ?? (await this.giveIdentity(vm, request, ctx));
  }

  /**
   * ONE reconfigure: the node's record in the annotation, its CPUs and memory, the guestinfo
   * documents from 0600 files (the user-data holds the private key) and the public identity.
   */
  private async giveIdentity(vm: VmInfo, request: CreateNodeRequest, ctx: DriverContext): Promise<PublicIdentity> {
    const record: NodeRecord = { kubedos: 1, kind: 'node', nodeId: request.nodeId, labels: request.labels };
    const docs = guestinfoDocuments({ instanceId: request.nodeId, identity: request.identity, authorizedKeys: request.authorizedKeys });
    const pub = publicPart(request.identity);
    await this.withSecrets({ metadata: docs['guestinfo.metadata'], userdata: docs['guestinfo.userdata'] }, (files) =>
      this.govc.run(
        [
          'vm.change', '-vm', vm.ref,
          '-annotation', encodeRecord(record),
          '-c', String(this.spec.cpus), '-m', String(Math.floor(this.spec.memory / MiB)),
          '-f', `guestinfo.metadata=${files.metadata}`,
          '-e', `guestinfo.metadata.encoding=${docs['guestinfo.metadata.encoding']}`,
          '-f', `guestinfo.userdata=${files.userdata}`,
          '-e', `guestinfo.userdata.encoding=${docs['guestinfo.userdata.encoding']}`,
          '-e', `${IDENTITY_KEY}=${JSON.stringify(pub)}`,
        ],
        ctx,
        { step: `identity of ${request.nodeId}` },
      ),
    );
    return pub;
  }

  /** The NIC of every node: vmxnet3 on the target's port group. */
  private nic(p: Placement): string[] {
    return ['-net', p.network, '-net.adapter', 'vmxnet3'];
  }

  /**
   * vCenter: one clone of the template under `name`, linked to its snapshot unless `clone: full`,
   * powered off. Nothing else is asked of govc here: with -c, -m or -annotation it would send a
   * reconfigure of its own after the clone, and a worker dying between the two would leave a
   * clone without its record.
   */
  private async cloneNode(template: string, name: string, p: Placement, ctx: DriverContext): Promise<void> {
    await this.govc.run(
      [
        'vm.clone', '-vm', template,
        ...(this.spec.clone === 'linked' ? ['-link', '-snapshot', BASE_SNAPSHOT] : []),
        '-folder', p.folder, '-pool', p.pool, ...(p.host ? ['-host', p.host] : []), '-ds', p.datastore,
        '-on=false', ...this.nic(p),
        name,
      ],
      ctx,
      { timeoutMs: GOVC_TIMEOUT.task, step: `clone ${name}` },
    );
  }

  /** ESXi: copy the template's disk to `<node id>/` on the datastore and create a VM around it, with the record. */
  private async copyNode(template: string, record: NodeRecord, p: Placement, ctx: DriverContext): Promise<void> {
    const tpl = await vmAt(this.govc, p.folder, path.posix.basename(template), ctx);
    if (!tpl) throw new KubedosError(`target ${this.name}: template ${template} is gone`, 'deploy again: prepare imports it again', { retryable: false });
    const disk = tpl.disks.map(datastorePath).find(Boolean);
    if (!disk) throw new KubedosError(`target ${this.name}: template ${template} has no disk`);
    const guestId = tpl.guestId || 'otherLinux64Guest';
    const firmware = tpl.firmware || 'efi';
    const dir = record.nodeId;
    // A directory left by a create that died before its VM existed: no VM of this name uses it.
    await this.govc.run(['datastore.rm', '-f', '-ds', p.datastore, dir], ctx);
    await this.govc.run(['datastore.mkdir', '-ds', p.datastore, dir], ctx);
    await this.govc.run(['datastore.cp', '-ds', disk.datastore, '-ds-target', p.datastore, disk.path, `${dir}/${dir}.vmdk`], ctx, { timeoutMs: GOVC_TIMEOUT.task, step: `copy the disk of ${dir}` });
    await this.govc.run(
      [
        'vm.create', '-on=false', '-ds', p.datastore, '-pool', p.pool, ...(p.host ? ['-host', p.host] : []),
        '-c', String(this.spec.cpus), '-m', String(Math.floor(this.spec.memory / MiB)), ...this.nic(p), '-g', guestId, '-firmware', firmware,
        '-disk.controller', 'lsilogic', '-disk', `${dir}/${dir}.vmdk`, '-link=false',
        '-annotation', encodeRecord(record),
        record.nodeId,
      ],
      ctx,
      { timeoutMs: GOVC_TIMEOUT.task, step: `create ${dir}` },
    );
  }

  async start(nodeId: string, ctx: DriverContext): Promise<void> {
    const { vm } = await this.owned(nodeId, 'start', ctx);
    if (vm.powerState === 'poweredOn') return;
    try {
      await this.govc.run(['vm.power', '-on', vm.ref], ctx, { timeoutMs: GOVC_TIMEOUT.task, step: `power on ${nodeId}` });
    } catch (err) {
      // Powered on meanwhile (a retried start): fine.
      if (!/InvalidPowerState/.test(govcStderr(err)) || (await this.owned(nodeId, 'start', ctx)).vm.powerState !== 'poweredOn') throw err;
    }
    logger.info({ target: this.name, nodeId }, 'vsphere vm powered on');
  }

  /** True once the guest set the ready key to its hostname; then the private key leaves the VM's configuration. */
  private async observeReady(vm: VmInfo, identity: PublicIdentity | undefined, ctx: DriverContext): Promise<boolean> {
    if (!identity || vm.extraConfig[GUESTINFO_READY_KEY] !== identity.hostname) return false;
    const secrets = SECRET_GUESTINFO_KEYS.filter((k) => vm.extraConfig[k]);
    if (secrets.length) {
      await this.govc.run(['vm.change', '-vm', vm.ref, ...secrets.flatMap((k) => ['-e', `${k}=`])], ctx);
      logger.debug({ target: this.name, vm: vm.ref }, 'guestinfo.userdata removed after readiness');
    }
    return true;
  }

  async readiness(nodeId: string, ctx: DriverContext): Promise<boolean> {
    const { vm, identity } = await this.owned(nodeId, 'check', ctx);
    if (await this.observeReady(vm, identity, ctx)) return true;
    if (vm.powerState !== 'poweredOn') throw new NodeNotRunningError(nodeId, this.name, `vSphere reports the VM ${vm.powerState || 'gone'} (runtime.powerState)`);
    return false;
  }

  async address(nodeId: string, ctx: DriverContext): Promise<NodeAddress> {
    const { vm, identity } = await this.owned(nodeId, 'locate', ctx);
    if (!(await this.observeReady(vm, identity, ctx))) {
      if (vm.powerState !== 'poweredOn') throw new NodeNotRunningError(nodeId, this.name, `vSphere reports the VM ${vm.powerState || 'gone'} (runtime.powerState)`);
      throw new NodeAddressUnknownError(this.name, nodeId, `it has not reported ready (${GUESTINFO_READY_KEY}) yet`, 'the image sets it at the end of first boot (open-vm-tools and the KubeDos guestinfo hook); any other image must set it itself');
    }
    const ip = vm.ipv4[0];
    if (!ip) throw new NodeAddressUnknownError(this.name, nodeId, 'VMware Tools reports no IPv4 address', "install open-vm-tools in the image: it reports the guest's addresses to vSphere");
    return { host: ip, ports: { 22: 22 } };
  }

  async destroy(nodeId: string, ctx: DriverContext): Promise<void> {
    checkNodeId(nodeId);
    const p = await this.placement(ctx);
    const named = await vmAt(this.govc, p.folder, nodeId, ctx);
    let mine = named && !named.template && nodeRecord(named.annotation)?.nodeId === nodeId ? [named] : [];
    if (named && !mine.length) logger.warn({ target: this.name, nodeId, vm: named.ref }, "a VM with the node's name is not KubeDos's: left alone");
    // Renamed by hand? Ours are still recognised by their record.
    if (!named) mine = (await vmsIn(this.govc, p.folder, ctx)).filter((vm) => !vm.template && nodeRecord(vm.annotation)?.nodeId === nodeId);
    // A clone that never got its name (its create died half-way).
    const clone = p.vcenter ? await vmAt(this.govc, p.folder, cloneName(nodeId), ctx) : undefined;
    if (clone && this.cloneIsOurs(clone, nodeId) && !mine.some((vm) => vm.ref === clone.ref)) mine.push(clone);
    for (const vm of mine) await this.destroyVm(vm, ctx);
    // ESXi: the node's directory (a VM's files go with it; this is what a create that died left).
    if (!p.vcenter && (!named || mine.length)) await this.govc.run(['datastore.rm', '-f', '-ds', p.datastore, nodeId], ctx);
  }

  /** Power off (hard) and delete one VM and its files. */
  private async destroyVm(vm: VmInfo, ctx: DriverContext): Promise<void> {
    try {
      if (vm.powerState !== 'poweredOff' && !vm.template) await this.govc.run(['vm.power', '-off', '-force', vm.ref], ctx, { timeoutMs: GOVC_TIMEOUT.task, step: `power off ${vm.name}` });
    } catch (err) {
      if (!/InvalidPowerState/.test(govcStderr(err)) && !isNotFound(err)) throw err;
    }
    try {
      await this.govc.run(['vm.destroy', vm.ref], ctx, { timeoutMs: GOVC_TIMEOUT.task, step: `destroy ${vm.name}` });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    logger.info({ target: this.name, vm: vm.name }, 'vsphere vm destroyed');
  }

  async list(filter: { platform?: string; fleet?: string }, ctx: DriverContext): Promise<OwnedNode[]> {
    const p = await this.placement(ctx);
    return (await vmsIn(this.govc, p.folder, ctx))
      .flatMap((vm) => {
        const record = vm.template ? undefined : nodeRecord(vm.annotation);
        return record ? [{ nodeId: record.nodeId, labels: record.labels, identity: identityOf(vm.extraConfig), running: vm.powerState === 'poweredOn' }] : [];
      })
      .filter((n) => (!filter.platform || n.labels.platform === filter.platform) && (!filter.fleet || n.labels.fleet === filter.fleet))
      .sort((a, b) => a.nodeId.localeCompare(b.nodeId));
  }

  async close(): Promise<void> {
    /* govc keeps no session (GOVC_PERSIST_SESSION=false): nothing to release */
  }
}
