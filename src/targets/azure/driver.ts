/**
 * The Azure target: one VM per node, in one resource group, from a managed image.
 *
 * - prepare: the fixed VHD goes up as a page blob `<container>/<sha256>.vhd` (page-blob.ts:
 *   sparse, resumable), then a managed image `kubedos-<image>-<sha12>` (Hyper-V generation 2,
 *   Linux, generalized) is made from it, tagged with the image digest and the VHD's sha256, and
 *   found again by those tags; a repeat is a list call.
 * - create: the node's NoCloud user-data (the same `#cloud-config` a cidata seed holds,
 *   src/targets/nocloud.ts) is the VM's custom data: Azure hands it to the guest in ovf-env.xml on
 *   the provisioning media, which the image's azure reader (src/foundry/azure-reader.ts) applies
 *   before sshd and then reports "provisioning complete" to the WireServer (a stock image with
 *   cloud-init's Azure datasource or walinuxagent does the same). Per node: a NIC `<vm>-nic` on
 *   the spec's subnet (and a Standard static public IP `<vm>-ip` when `publicIp`), then the VM
 *   `<vm>` (the node id, shortened with a hash past 64 characters) with boot diagnostics on,
 *   OS disk `<vm>-osdisk`, NIC and disk with deleteOption Delete, and tags carrying the labels and
 *   the public identity (kubedos-*). Creating a VM lasts until the guest has reported; the poller's
 *   state is heartbeated, so a retried create resumes the same operation. A VM that exists for
 *   the node is kept and the identity its tags record returned (an Azure PUT on it would try to
 *   change custom data, which Azure refuses).
 * - start: Azure starts a VM when it creates it; start only starts a stopped or deallocated one.
 * - readiness: `kubedos: ready <hostname>` in the boot diagnostics serial log (its SAS URI from
 *   retrieveBootDiagnosticsData).
 * - address: the NIC's private IP, or the public IP with `publicIp`.
 * - destroy: the VM (its OS disk and NIC go with it), then whatever of `<vm>-nic`, `<vm>-ip`,
 *   `<vm>-osdisk` is still there and tagged for this node. Nothing untagged is ever touched.
 * - list: VMs of the resource group tagged `kubedos=node`, with their labels from the tags.
 *
 * A VM per node, not a scale set: each node has its own identity in its own custom data, its own
 * name derived from the node id and its own life (created, health-checked, destroyed and replaced
 * one at a time by the fleet's workflows); a Flexible scale set would add a second owner of
 * rollouts (its upgrade policy) and per-instance custom data that scale sets do not model.
 */
import { createHash } from 'node:crypto';
import type { VirtualMachine } from '@azure/arm-compute';
import { ArtifactRequiredError, AzureResourceNotOwnedError, AzureUnavailableError, ConfigError, NodeAddressUnknownError, NodeImageConflictError, NodeNotRunningError, TargetNodeNotFoundError } from '../../errors';
import { logger } from '../../log';
import type { CreateNodeRequest, DriverContext, DriverEnvironment, ImageSource, NodeAddress, NodeLabels, OwnedNode, PreparedImage, TargetDriver } from '../driver';
import { mapLimited, nodeRecordOf, nodeRecordTags, sleep } from '../driver-support';
import { consoleReady, publicPart, type NodeIdentity, type PublicIdentity } from '../identity';
import { renderNocloud } from '../nocloud';
import { awaitOperation, connectAzure, HEARTBEAT_MS, previousOperation, restoredPoller, type AzureConnection, type Poller } from './arm';
import { azureFailure, isAzureNotFound, type AzureFailureContext } from './failures';
import { azure, type AzureTargetSpec } from './index';
import { uploadPageBlob } from './page-blob';

/** Tag names KubeDos writes (values ≤ 256 characters, as Azure allows). */
export const TAG = {
  kind: 'kubedos',
  nodeId: 'kubedos-node',
  platform: 'kubedos-platform',
  fleet: 'kubedos-fleet',
  generation: 'kubedos-generation',
  image: 'kubedos-image',
  imageDigest: 'kubedos-image-digest',
  sha256: 'kubedos-sha256',
  hostname: 'kubedos-hostname',
  machineId: 'kubedos-machine-id',
  hostKey: 'kubedos-host-key',
  hostKeyFingerprint: 'kubedos-host-key-sha256',
} as const;

export interface AzureDriverOptions {
  /** Poll interval of long operations when Azure sends no Retry-After. @default 5000 */
  pollIntervalMs?: number;
}

/** What the tags of a node's VM record. */
export interface AzureNodeRecord {
  nodeId: string;
  labels: NodeLabels;
  identity: PublicIdentity;
}

function checkNodeId(nodeId: string): void {
  if (!/^[a-z0-9]([a-z0-9.-]{0,198}[a-z0-9])?$/.test(nodeId)) throw new TypeError(`invalid node id ${JSON.stringify(nodeId)}`);
}

/** The VM name of a node: the node id ('.' as '-'), shortened with a hash past 64 characters (Azure's limit for Linux VMs). */
export function vmNameOf(nodeId: string): string {
  const name = nodeId.replace(/\./g, '-');
  if (name.length <= 64) return name;
  return `${name.slice(0, 55).replace(/-+$/, '')}-${createHash('sha256').update(nodeId).digest('hex').slice(0, 8)}`;
}

/** The managed image of an artifact: `kubedos-<image>-<sha12>` (≤ 80 characters). */
export function imageNameOf(image: string, sha256: string): string {
  return `kubedos-${image.slice(0, 50).replace(/-+$/, '')}-${sha256.slice(0, 12)}`;
}

export function nodeTags(nodeId: string, labels: NodeLabels, identity: PublicIdentity): Record<string, string> {
  return {
    [TAG.kind]: 'node',
    ...nodeRecordTags(TAG, nodeId, labels, identity),
  };
}

/** The record of a VM's tags, when they are KubeDos's and complete. */
export function recordOfTags(tags: Record<string, string> | undefined): AzureNodeRecord | undefined {
  if (!tags || tags[TAG.kind] !== 'node') return undefined;
  return nodeRecordOf(TAG, (k) => (typeof tags[k] === 'string' && tags[k] !== '' ? tags[k] : undefined));
}

/** The parts of the node's VM body that come from the spec and the request (pure; the stand-in tests check it against the API). */
export function vmBody(spec: AzureTargetSpec, o: { vmName: string; imageId: string; nicId: string; identity: NodeIdentity; tags: Record<string, string>; customData: string; authorizedKeys: readonly string[] }): VirtualMachine {
  return {
    location: spec.location,
    tags: o.tags,
    hardwareProfile: { vmSize: spec.vmSize },
    storageProfile: {
      imageReference: { id: o.imageId },
      osDisk: {
        name: `${o.vmName}-osdisk`,
        createOption: 'FromImage',
        caching: 'ReadWrite',
        deleteOption: 'Delete',
        managedDisk: { storageAccountType: spec.osDiskType },
        ...(spec.osDiskSizeGiB ? { diskSizeGB: spec.osDiskSizeGiB } : {}),
      },
    },
    osProfile: {
      computerName: o.identity.hostname,
      adminUsername: spec.adminUsername,
      customData: Buffer.from(o.customData, 'utf8').toString('base64'),
      allowExtensionOperations: false,
      linuxConfiguration: {
        disablePasswordAuthentication: true,
        // The image reports provisioning itself (its azure reader); there is no VM agent for extensions.
        provisionVMAgent: false,
        ssh: { publicKeys: o.authorizedKeys.map((keyData) => ({ path: `/home/${spec.adminUsername}/.ssh/authorized_keys`, keyData: keyData.trim() })) },
      },
    },
    networkProfile: { networkInterfaces: [{ id: o.nicId, primary: true, deleteOption: 'Delete' }] },
    diagnosticsProfile: { bootDiagnostics: { enabled: true } },
  };
}

/** PowerState/<state> of a VM's instance view. */
function powerState(vm: VirtualMachine | undefined): string | undefined {
  return vm?.instanceView?.statuses?.map((s) => s.code ?? '').find((c) => c.startsWith('PowerState/'))?.slice('PowerState/'.length);
}

export class AzureDriver implements TargetDriver {
  readonly type = 'azure' as const;
  private connection?: AzureConnection;
  private readonly pollMs: number;
  private readonly failure: AzureFailureContext;

  constructor(
    readonly name: string,
    private readonly spec: AzureTargetSpec,
    // Every fact is on Azure (tags, page ranges, heartbeats): nothing is kept locally, so any worker resumes any node.
    _env: DriverEnvironment,
    options: AzureDriverOptions = {},
  ) {
    this.pollMs = options.pollIntervalMs ?? 5_000;
    this.failure = { target: name, resourceGroup: spec.resourceGroup, storageAccount: spec.storage.account, location: spec.location };
  }

  private get az(): AzureConnection {
    this.connection ??= connectAzure({ subscription: this.spec.subscription, storageAccount: this.spec.storage.account });
    return this.connection;
  }

  /** Run an SDK call; its failure becomes the KubeDos error of its class. */
  private async call<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw azureFailure(err, operation, this.failure);
    }
  }

  /** GET that answers undefined for 404. */
  private async maybe<T>(operation: string, fn: () => Promise<T>): Promise<T | undefined> {
    return this.call(operation, async () => {
      try {
        return await fn();
      } catch (err) {
        if (isAzureNotFound(err)) return undefined;
        throw err;
      }
    });
  }

  private rg(): string {
    return this.spec.resourceGroup;
  }

  // --- prepare ---------------------------------------------------------------------------------

  async prepare(image: ImageSource, ctx: DriverContext): Promise<PreparedImage> {
    const artifact = image.artifact;
    if (!artifact) throw new ArtifactRequiredError(this.name, 'azure', azure.accepts);
    if (artifact.format !== 'azure') throw new ArtifactRequiredError(this.name, 'azure', azure.accepts, artifact.format);
    if (!/^[0-9a-f]{64}$/.test(artifact.sha256)) throw new TypeError(`invalid artifact sha256 ${JSON.stringify(artifact.sha256)}`);
    const { storage } = this.spec;
    const where = `${storage.account}/${storage.container}`;
    const container = this.az.blobService.getContainerClient(storage.container);
    await this.call(`create container ${where}`, () => container.createIfNotExists({ abortSignal: ctx.signal }));
    const blob = container.getPageBlobClient(`${artifact.sha256}.vhd`);
    const step = `upload ${image.name} VHD to ${where}`;
    ctx.progress?.({ step, done: 0, total: artifact.size });
    const uploaded = await this.call(step, () => uploadPageBlob(blob, artifact, ctx, { onProgress: (done, total) => ctx.progress?.({ step, done, total }) }));
    logger.info({ target: this.name, ...uploaded }, 'azure vhd uploaded');

    const found = await this.findImage(artifact.sha256, ctx);
    if (found?.provisioningState === 'Succeeded') return { digest: image.digest, location: found.id! };
    const imageName = imageNameOf(image.name, artifact.sha256);
    const key = `create-image:${imageName}`;
    const create = `create image ${imageName}`;
    const restored = previousOperation(ctx.previous, key);
    const made = await this.call(create, async () => {
      const poller: Poller<{ id?: string }> = restored
        ? restoredPoller(this.az.compute, restored, this.az.compute.images.createOrUpdate, this.pollMs, ctx.signal)
        : (this.az.compute.images.createOrUpdate(
            this.rg(),
            imageName,
            {
              location: this.spec.location,
              tags: { [TAG.kind]: 'image', [TAG.image]: image.name, [TAG.imageDigest]: image.digest, [TAG.sha256]: artifact.sha256 },
              hyperVGeneration: 'V2',
              storageProfile: { osDisk: { osType: 'Linux', osState: 'Generalized', blobUri: blob.url.split('?')[0]!, storageAccountType: 'Standard_LRS' } },
            },
            { updateIntervalInMs: this.pollMs, abortSignal: ctx.signal },
          ) as unknown as Poller<{ id?: string }>);
      return awaitOperation(poller, key, create, ctx);
    });
    const id = made?.id ?? (await this.findImage(artifact.sha256, ctx))?.id;
    if (!id) throw new AzureUnavailableError(this.name, create, 'ImageNotFound', undefined, 'the image was created but cannot be found again', 'transient: retried');
    logger.info({ target: this.name, image: imageName }, 'azure image created');
    return { digest: image.digest, location: id };
  }

  /** The managed image of an artifact, found by its tags. */
  private async findImage(sha256: string, _ctx: DriverContext): Promise<{ id?: string; provisioningState?: string } | undefined> {
    return this.call(`list images of ${this.rg()}`, async () => {
      for await (const img of this.az.compute.images.listByResourceGroup(this.rg())) {
        if (img.tags?.[TAG.kind] === 'image' && img.tags?.[TAG.sha256] === sha256 && img.provisioningState !== 'Failed') return img;
      }
      return undefined;
    });
  }

  // --- nodes -----------------------------------------------------------------------------------

  private async getVm(vmName: string, instanceView = false): Promise<VirtualMachine | undefined> {
    return this.maybe(`get VM ${vmName}`, () => this.az.compute.virtualMachines.get(this.rg(), vmName, instanceView ? { expand: 'instanceView' } : {}));
  }

  /** The node's VM and its record; undefined when absent; AzureResourceNotOwnedError when the name is taken by something else. */
  private async ownedVm(nodeId: string, instanceView = false): Promise<{ vm: VirtualMachine; record: AzureNodeRecord; vmName: string } | undefined> {
    const vmName = vmNameOf(nodeId);
    const vm = await this.getVm(vmName, instanceView);
    if (!vm) return undefined;
    const record = recordOfTags(vm.tags);
    if (!record || record.nodeId !== nodeId) throw new AzureResourceNotOwnedError(this.name, `virtualMachines/${vmName}`, nodeId);
    return { vm, record, vmName };
  }

  async create(request: CreateNodeRequest, ctx: DriverContext): Promise<PublicIdentity> {
    const { nodeId, labels, identity } = request;
    checkNodeId(nodeId);
    if (!/\/providers\/Microsoft\.Compute\/images\/[^/]+$/i.test(request.image.location)) {
      throw new TypeError(`image location ${JSON.stringify(request.image.location)} is not a managed image of ${this.name}`);
    }
    const vmName = vmNameOf(nodeId);
    const key = `create-vm:${vmName}`;
    const step = `create VM ${vmName}`;
    const existing = await this.ownedVm(nodeId);
    if (existing) {
      const { record, vm } = existing;
      if (record.labels.imageDigest !== labels.imageDigest) throw new NodeImageConflictError(`${this.name} (VM ${vmName})`, nodeId, record.labels.imageDigest);
      if (vm.provisioningState === 'Creating' || vm.provisioningState === 'Updating') await this.awaitVmCreate(vmName, key, step, ctx);
      else if (vm.provisioningState === 'Failed') await this.provisioningFailed(vmName, step);
      else if (vm.provisioningState === 'Deleting') throw new AzureUnavailableError(this.name, step, 'Deleting', undefined, `VM ${vmName} is being deleted`, 'transient: retried once it is gone');
      await this.tagOsDisk(vmName, nodeId, ctx);
      return record.identity;
    }
    if (request.authorizedKeys.length === 0) {
      throw new ConfigError(`target ${this.name}: an Azure VM needs at least one SSH public key for its admin user (${this.spec.adminUsername}), and the fleet has none`, "add authorizedKeys to the image (or the fleet's spec)");
    }
    const tags = nodeTags(nodeId, labels, publicPart(identity));
    const nicId = await this.ensureNic(vmName, nodeId, tags, ctx);
    const body = vmBody(this.spec, {
      vmName,
      imageId: request.image.location,
      nicId,
      identity,
      tags,
      customData: renderNocloud({ instanceId: nodeId, identity, authorizedKeys: request.authorizedKeys })['user-data'],
      authorizedKeys: request.authorizedKeys,
    });
    await this.call(step, () => awaitOperation(this.az.compute.virtualMachines.createOrUpdate(this.rg(), vmName, body, { updateIntervalInMs: this.pollMs, abortSignal: ctx.signal }) as unknown as Poller<VirtualMachine>, key, step, ctx));
    await this.tagOsDisk(vmName, nodeId, ctx);
    logger.info({ target: this.name, nodeId, vm: vmName }, 'azure vm created');
    return publicPart(identity);
  }

  /** Wait for a VM create a previous attempt started: by its operation when heartbeated, else by the VM's provisioning state. */
  private async awaitVmCreate(vmName: string, key: string, step: string, ctx: DriverContext): Promise<void> {
    const state = previousOperation(ctx.previous, key);
    if (state) {
      logger.info({ target: this.name, vm: vmName }, 'azure vm create: resuming the previous attempt\'s operation');
      await this.call(step, () => awaitOperation(restoredPoller<VirtualMachine>(this.az.compute, state, this.az.compute.virtualMachines.createOrUpdate, this.pollMs, ctx.signal), key, step, ctx));
      return;
    }
    for (;;) {
      ctx.progress?.({ step });
      const vm = await this.getVm(vmName);
      if (!vm) throw new AzureUnavailableError(this.name, step, 'NotFound', 404, `VM ${vmName} disappeared while being created`, 'transient: retried');
      if (vm.provisioningState === 'Succeeded') return;
      if (vm.provisioningState === 'Failed') return this.provisioningFailed(vmName, step);
      await sleep(Math.min(this.pollMs, HEARTBEAT_MS), ctx.signal);
    }
  }

  /** A VM that failed to provision: its instance view says why. */
  private async provisioningFailed(vmName: string, step: string): Promise<never> {
    const vm = await this.getVm(vmName, true);
    const status = vm?.instanceView?.statuses?.find((s) => s.level === 'Error' || /ProvisioningState\/failed/i.test(s.code ?? ''));
    const code = /ProvisioningState\/failed\/(.+)$/i.exec(status?.code ?? '')?.[1] ?? 'ProvisioningFailed';
    throw azureFailure({ message: `The long-running operation has failed. ${code}. ${status?.message ?? 'the VM is in provisioning state Failed'}` }, step, this.failure);
  }

  /** The node's NIC (and public IP), made or found; its resource id. */
  private async ensureNic(vmName: string, nodeId: string, tags: Record<string, string>, ctx: DriverContext): Promise<string> {
    const nicName = `${vmName}-nic`;
    const ownTags = { [TAG.kind]: 'node', [TAG.nodeId]: nodeId };
    const existing = await this.maybe(`get NIC ${nicName}`, () => this.az.network.networkInterfaces.get(this.rg(), nicName));
    if (existing && existing.tags?.[TAG.nodeId] !== nodeId) throw new AzureResourceNotOwnedError(this.name, `networkInterfaces/${nicName}`, nodeId);
    let publicIPAddress: { id: string } | undefined;
    if (this.spec.publicIp) {
      const ipName = `${vmName}-ip`;
      const ip = await this.maybe(`get public IP ${ipName}`, () => this.az.network.publicIPAddresses.get(this.rg(), ipName));
      if (ip && ip.tags?.[TAG.nodeId] !== nodeId) throw new AzureResourceNotOwnedError(this.name, `publicIPAddresses/${ipName}`, nodeId);
      const made =
        ip ??
        (await this.call(`create public IP ${ipName}`, () =>
          this.az.network.publicIPAddresses.beginCreateOrUpdateAndWait(
            this.rg(),
            ipName,
            { location: this.spec.location, tags: ownTags, sku: { name: 'Standard' }, publicIPAllocationMethod: 'Static', publicIPAddressVersion: 'IPv4' },
            { updateIntervalInMs: this.pollMs, abortSignal: ctx.signal },
          ),
        ));
      publicIPAddress = { id: made.id! };
    }
    if (existing?.id && existing.provisioningState === 'Succeeded') return existing.id;
    ctx.progress?.({ step: `create NIC ${nicName}` });
    const nic = await this.call(`create NIC ${nicName}`, () =>
      this.az.network.networkInterfaces.beginCreateOrUpdateAndWait(
        this.rg(),
        nicName,
        {
          location: this.spec.location,
          tags: { ...ownTags, [TAG.platform]: tags[TAG.platform]!, [TAG.fleet]: tags[TAG.fleet]! },
          ipConfigurations: [{ name: 'ipconfig1', primary: true, subnet: { id: this.spec.subnet }, privateIPAllocationMethod: 'Dynamic', ...(publicIPAddress ? { publicIPAddress } : {}) }],
        },
        { updateIntervalInMs: this.pollMs, abortSignal: ctx.signal },
      ),
    );
    return nic.id!;
  }

  /** Disks made by a VM carry no tags: tag the OS disk, so that a leftover is known to be this node's. */
  private async tagOsDisk(vmName: string, nodeId: string, ctx: DriverContext): Promise<void> {
    const diskName = `${vmName}-osdisk`;
    const disk = await this.maybe(`get disk ${diskName}`, () => this.az.compute.disks.get(this.rg(), diskName));
    if (!disk || disk.tags?.[TAG.nodeId] === nodeId) return;
    if (disk.managedBy && !disk.managedBy.toLowerCase().endsWith(`/virtualmachines/${vmName.toLowerCase()}`)) return;
    await this.call(`tag disk ${diskName}`, () =>
      awaitOperation(this.az.compute.disks.update(this.rg(), diskName, { tags: { ...disk.tags, [TAG.kind]: 'node', [TAG.nodeId]: nodeId } }, { updateIntervalInMs: this.pollMs, abortSignal: ctx.signal }) as unknown as Poller<unknown>, `tag-disk:${diskName}`, `tag disk ${diskName}`, ctx),
    );
  }

  async start(nodeId: string, ctx: DriverContext): Promise<void> {
    checkNodeId(nodeId);
    const owned = await this.ownedVm(nodeId, true);
    if (!owned) throw new TargetNodeNotFoundError(this.name, nodeId, 'start');
    const state = powerState(owned.vm);
    if (state === 'running' || state === 'starting') return;
    const step = `start VM ${owned.vmName}`;
    await this.call(step, () => awaitOperation(this.az.compute.virtualMachines.start(this.rg(), owned.vmName, { updateIntervalInMs: this.pollMs, abortSignal: ctx.signal }) as unknown as Poller<void>, `start-vm:${owned.vmName}`, step, ctx));
    logger.info({ target: this.name, nodeId, vm: owned.vmName }, 'azure vm started');
  }

  async address(nodeId: string, _ctx: DriverContext): Promise<NodeAddress> {
    checkNodeId(nodeId);
    const owned = await this.ownedVm(nodeId);
    if (!owned) throw new TargetNodeNotFoundError(this.name, nodeId, 'locate');
    const nicName = `${owned.vmName}-nic`;
    const nic = await this.maybe(`get NIC ${nicName}`, () => this.az.network.networkInterfaces.get(this.rg(), nicName));
    const config = nic?.ipConfigurations?.[0];
    if (this.spec.publicIp) {
      const ip = await this.maybe(`get public IP ${owned.vmName}-ip`, () => this.az.network.publicIPAddresses.get(this.rg(), `${owned.vmName}-ip`));
      if (ip?.ipAddress) return { host: ip.ipAddress, ports: { 22: 22 } };
      throw new NodeAddressUnknownError(this.name, nodeId, `public IP ${owned.vmName}-ip has no address yet`);
    }
    if (!config?.privateIPAddress) throw new NodeAddressUnknownError(this.name, nodeId, `NIC ${nicName} has no private IP yet`);
    return { host: config.privateIPAddress, ports: { 22: 22 } };
  }

  /** The boot diagnostics serial log of a VM ('' while Azure has none yet). */
  async serialLog(vmName: string, ctx: DriverContext = {}): Promise<string> {
    const data = await this.call(`retrieve boot diagnostics of ${vmName}`, () => this.az.compute.virtualMachines.retrieveBootDiagnosticsData(this.rg(), vmName, { sasUriExpirationTimeInMinutes: 5, abortSignal: ctx.signal }));
    const uri = data.serialConsoleLogBlobUri;
    if (!uri) return '';
    // The SAS URI is a credential: never logged, not even in the error.
    const got = await this.call(`read the serial log of ${vmName}`, () => this.az.fetchText(uri, ctx.signal));
    if (got.status === 404) return '';
    if (got.status !== 200) throw azureFailure({ statusCode: got.status, message: `the serial log answered HTTP ${got.status}` }, `read the serial log of ${vmName}`, this.failure);
    return got.body;
  }

  async readiness(nodeId: string, ctx: DriverContext): Promise<boolean> {
    checkNodeId(nodeId);
    const owned = await this.ownedVm(nodeId, true);
    if (!owned) throw new TargetNodeNotFoundError(this.name, nodeId, 'check');
    const log = await this.serialLog(owned.vmName, ctx);
    if (consoleReady(log, owned.record.identity.hostname)) return true;
    const state = powerState(owned.vm);
    if (state === 'stopped' || state === 'deallocated' || state === 'stopping' || state === 'deallocating') {
      throw new NodeNotRunningError(nodeId, this.name, log.trimEnd().split('\n').slice(-15).join('\n'));
    }
    return false;
  }

  async destroy(nodeId: string, ctx: DriverContext): Promise<void> {
    checkNodeId(nodeId);
    const vmName = vmNameOf(nodeId);
    const vm = await this.getVm(vmName);
    if (vm) {
      const record = recordOfTags(vm.tags);
      if (!record || record.nodeId !== nodeId) {
        // Not ours: never touched, and nothing else of that name is either.
        logger.warn({ target: this.name, nodeId, vm: vmName }, 'azure destroy: a VM of that name exists but is not this node\'s; left alone');
        return;
      }
      const key = `delete-vm:${vmName}`;
      const step = `delete VM ${vmName}`;
      const state = previousOperation(ctx.previous, key);
      await this.call(step, () =>
        awaitOperation(
          state ? restoredPoller<void>(this.az.compute, state, this.az.compute.virtualMachines.delete, this.pollMs, ctx.signal) : (this.az.compute.virtualMachines.delete(this.rg(), vmName, { updateIntervalInMs: this.pollMs, abortSignal: ctx.signal }) as unknown as Poller<void>),
          key,
          step,
          ctx,
        ),
      );
      logger.info({ target: this.name, nodeId, vm: vmName }, 'azure vm deleted');
    }
    // What deleteOption did not take (a create that failed before its VM existed, or a VM deleted by hand).
    const rg = this.rg();
    const nic = await this.maybe(`get NIC ${vmName}-nic`, () => this.az.network.networkInterfaces.get(rg, `${vmName}-nic`));
    if (nic?.tags?.[TAG.nodeId] === nodeId) await this.call(`delete NIC ${vmName}-nic`, () => this.az.network.networkInterfaces.beginDeleteAndWait(rg, `${vmName}-nic`, { updateIntervalInMs: this.pollMs, abortSignal: ctx.signal }));
    const ip = await this.maybe(`get public IP ${vmName}-ip`, () => this.az.network.publicIPAddresses.get(rg, `${vmName}-ip`));
    if (ip?.tags?.[TAG.nodeId] === nodeId) await this.call(`delete public IP ${vmName}-ip`, () => this.az.network.publicIPAddresses.beginDeleteAndWait(rg, `${vmName}-ip`, { updateIntervalInMs: this.pollMs, abortSignal: ctx.signal }));
    const disk = await this.maybe(`get disk ${vmName}-osdisk`, () => this.az.compute.disks.get(rg, `${vmName}-osdisk`));
    if (disk?.tags?.[TAG.nodeId] === nodeId && !disk.managedBy) {
      await this.call(`delete disk ${vmName}-osdisk`, () => awaitOperation(this.az.compute.disks.delete(rg, `${vmName}-osdisk`, { updateIntervalInMs: this.pollMs, abortSignal: ctx.signal }) as unknown as Poller<void>, `delete-disk:${vmName}`, `delete disk ${vmName}-osdisk`, ctx));
    }
  }

  async list(filter: { platform?: string; fleet?: string }, ctx: DriverContext): Promise<OwnedNode[]> {
    const records = await this.call(`list VMs of ${this.rg()}`, async () => {
      const out: Array<{ record: AzureNodeRecord; vmName: string }> = [];
      for await (const vm of this.az.compute.virtualMachines.list(this.rg(), { abortSignal: ctx.signal })) {
        const record = recordOfTags(vm.tags);
        if (!record || vm.name !== vmNameOf(record.nodeId)) continue;
        if (filter.platform && record.labels.platform !== filter.platform) continue;
        if (filter.fleet && record.labels.fleet !== filter.fleet) continue;
        out.push({ record, vmName: vm.name });
      }
      return out;
    });
    const nodes = await mapLimited(records, 4, async ({ record, vmName }) => {
      const view = await this.maybe(`instance view of ${vmName}`, () => this.az.compute.virtualMachines.instanceView(this.rg(), vmName, { abortSignal: ctx.signal }));
      const state = powerState({ instanceView: view } as VirtualMachine);
      return { nodeId: record.nodeId, labels: record.labels, identity: record.identity, running: state === 'running' || state === 'starting' };
    });
    return nodes.sort((a, b) => a.nodeId.localeCompare(b.nodeId));
  }
}
