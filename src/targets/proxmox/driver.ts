/**
 * The Proxmox VE target: nodes are VMs on one Proxmox node, driven over SSH with `qm` and `pvesm`
 * (src/targets/host.ts: every command an argv array quoted by the SSH layer, the host key pinned
 * from the target spec, files over SFTP, the image by a resumable, verified upload).
 *
 * - prepare: the verified qcow2 is uploaded once per digest to `<imageDir>/<sha256>.qcow2`
 *   (default /var/lib/vz/template/kubedos), read-only. A repeat finds it and sends nothing.
 * - create: the node's identity (hostname, SSH host key, machine-id, authorized keys) as NoCloud
 *   user-data and meta-data snippets (nocloud.ts), 0600, on a storage with `snippets` content;
 *   then ONE `qm create` with everything: disk imported from the prepared image
 *   (`--scsi0 <storage>:0,import-from=<path>`), OVMF with an EFI vars disk, virtio NIC on the
 *   bridge, serial console socket, guest agent channel, the machine-id as SMBIOS UUID, a
 *   cloud-init drive (`--ide2 <storage>:cloudinit`) whose content is the snippets
 *   (`--cicustom user=…,meta=…`, `--citype nocloud`), tags `kubedos;platform-…;fleet-…;gen-…`
 *   and, in the description, a one-line JSON record of the node id, labels and public identity.
 *   One command means a VM either exists completely, labels included, or not at all (a create
 *   killed halfway leaves at most a locked, unlabelled VM, which is not ours and never touched).
 * - VM ids: the lowest id of `vmidRange` that `qm list` does not show and no create of this
 *   driver is trying; `qm create` refusing an id that exists (made meanwhile by another worker,
 *   or used on another cluster node, which `qm list` does not show) moves on to the next one.
 *   Ids refused while still absent from `qm list` are remembered as used elsewhere in the cluster.
 * - ownership: a VM is KubeDos's only when its id is inside `vmidRange`, it carries the
 *   `kubedos` tag AND its description parses as a KubeDos record for that node id (a description
 *   edited by hand makes it an orphan nobody touches). Anything else is never started, stopped
 *   or destroyed, whatever node id it was asked for by; start and destroy check afresh, never
 *   from memory.
 * - start / readiness: before `qm start`, a small detached reader (perl, always on Proxmox) is
 *   started on the host; it connects to the VM's serial socket
 *   (/var/run/qemu-server/<vmid>.serial0) as soon as QEMU creates it, appends the console to a
 *   log, and exits once `kubedos: ready <hostname>` went by (QEMU serves one client at a time:
 *   `qm terminal` waits until then). readiness() reads that log; a VM that stopped before
 *   reporting is an error with the console's tail; a reader that died is started again.
 * - address: the guest's IPv4 from the QEMU guest agent (`qm guest cmd <vmid>
 *   network-get-interfaces`). Without an agent in the image there is no address (documented
 *   limitation: bridged guests get theirs by DHCP, which Proxmox does not see); readiness works
 *   without one.
 * - destroy: `qm stop`, `qm destroy --purge --destroy-unreferenced-disks` (disks and the
 *   cloud-init volume, which holds a copy of the private key, go with it), then the snippets and
 *   the console log.
 * - list: in-range VMs whose tag and description say they are ours, with their labels.
 *
 * The SSH user must be root (qm and pvesm are root tools; `import-from` a path is root@pam only).
 *
 * The file by job: ./argv.ts (qm and pvesm command lines), ./parse.ts (their output),
 * ./record.ts (tags and the description record), ./console-reader.ts (the perl reader and its
 * lifecycle), ./vmid.ts (VM-id allocation); this file drives them.
 */
import path from 'node:path';
import { ArtifactRequiredError, ConfigError, GuestAgentUnavailableError, NodeImageConflictError, KubedosError, NodeNotRunningError, NotOwnedVmError, TargetNodeNotFoundError } from '../../errors';
import { logger } from '../../log';
import { proxmox, type ProxmoxTargetSpec } from './index';
import type { CreateNodeRequest, DriverContext, DriverEnvironment, ImageSource, NodeAddress, OwnedNode, PreparedImage, TargetDriver } from '../driver';
import { checkNodeId, mapLimited, reporting } from '../driver-support';
import { commandStderr, SshHost, type TargetHost } from '../host';
import { consoleReady, machineIdUuid, publicPart, type PublicIdentity } from '../identity';
import { renderNocloud } from '../nocloud';
import {
  pvesmPathArgv,
  pvesmStatusArgv,
  qmConfigArgv,
  qmCreateArgv,
  qmDestroyArgv,
  qmGuestInterfacesArgv,
  qmListArgv,
  qmStartArgv,
  qmStatusArgv,
  qmStopArgv,
  type QmCreateOptions,
} from './argv';
import { ConsoleReaders } from './console-reader';
import { guestIpv4, parsePvesmStatus, parseQmConfig, parseQmList, parseQmStatus, vmMissing, type QmListEntry } from './parse';
import { decodeDescription, encodeDescription, KUBEDOS_TAG, tagsOf, vmTags, type VmRecord } from './record';
import { VmidAllocator } from './vmid';

const MiB = 1024 * 1024;

/** Where qemu-server creates a VM's serial sockets (`serial0: socket`). */
export const QEMU_SERVER_RUN_DIR = '/var/run/qemu-server';
/** Where prepared images are uploaded on the Proxmox host. */
export const DEFAULT_IMAGE_DIR = '/var/lib/vz/template/kubedos';

const TIMEOUT = { quick: 60_000, start: 300_000, create: 30 * 60_000 } as const;

export interface ProxmoxDriverOptions {
  /** The host to work on. @default an SSH host from `spec.ssh` */
  host?: TargetHost;
  /** Directory for prepared images on the host. @default DEFAULT_IMAGE_DIR */
  imageDir?: string;
  /** KubeDos's own state on the host (console logs). @default `/var/lib/kubedos/targets/<name>` */
  remoteStateDir?: string;
  /**
   * Storage for the cloud-init snippets; it needs the `snippets` content type.
   * @default the first active one `pvesm status --content snippets` lists, `local` preferred
   */
  snippetStorage?: string;
  /** Where QEMU's serial sockets are. @default QEMU_SERVER_RUN_DIR */
  serialSocketDir?: string;
}

/** A VM of ours, as found on the host. */
interface OwnedVm {
  vmid: number;
  /** From `qm list`: running, stopped, paused, … */
  status: string;
  record: VmRecord;
  config: Record<string, string>;
}

/** Node ids name VMs (`--name` is a DNS name on Proxmox) and files. */
const NODE_ID_RULE = { dnsName: true } as const;

interface HostFacts {
  snippetStorage: string;
  /** Directory that `<snippetStorage>:snippets/<file>` resolves to. */
  snippetDir: string;
}

export class ProxmoxDriver implements TargetDriver {
  readonly type = 'proxmox' as const;
  private readonly host: TargetHost;
  private readonly imageDir: string;
  private readonly stateDir: string;
  private readonly serialDir: string;
  private readonly snippetStorageOption?: string;
  private facts?: Promise<HostFacts>;
  private readonly vmids: VmidAllocator;
  private readonly consoles: ConsoleReaders;
  /** node id → vmid and hostname, once seen as ours: for read-only polling (readiness, address); start, stop and destroy look afresh. */
  private readonly known = new Map<string, { vmid: number; hostname: string }>();

  constructor(
    readonly name: string,
    private readonly spec: ProxmoxTargetSpec,
    _env: DriverEnvironment,
    options: ProxmoxDriverOptions = {},
  ) {
    this.host = options.host ?? new SshHost(spec.ssh);
    this.imageDir = options.imageDir ?? DEFAULT_IMAGE_DIR;
    this.stateDir = options.remoteStateDir ?? `/var/lib/kubedos/targets/${name}`;
    this.serialDir = options.serialSocketDir ?? QEMU_SERVER_RUN_DIR;
    this.snippetStorageOption = options.snippetStorage;
    // Values that end up inside property strings (`a=b,c=d`): refuse what would change their structure.
    const storageId = /^[a-z][a-z0-9._-]*[a-z0-9]$/i;
    const where = `targets.${name}`;
    if (!storageId.test(spec.storage)) throw new ConfigError(`${where}.storage: invalid Proxmox storage id ${JSON.stringify(spec.storage)}`);
    if (options.snippetStorage !== undefined && !storageId.test(options.snippetStorage)) throw new ConfigError(`${where}: invalid snippet storage id ${JSON.stringify(options.snippetStorage)}`);
    if (!/^[A-Za-z0-9_.-]+$/.test(spec.bridge)) throw new ConfigError(`${where}.bridge: invalid bridge name ${JSON.stringify(spec.bridge)}`);
    for (const dir of [this.imageDir, this.stateDir, this.serialDir]) {
      if (!/^\/[A-Za-z0-9._/-]*$/.test(dir)) throw new ConfigError(`${where}: host directory ${JSON.stringify(dir)} must be an absolute path of [A-Za-z0-9._/-]`);
    }
    this.vmids = new VmidAllocator(name, spec.vmidRange);
    this.consoles = new ConsoleReaders(this.host, this.stateDir, this.serialDir, (argv, ctx) => this.run(argv, ctx));
  }

  private run(argv: readonly string[], ctx: DriverContext, timeoutMs: number = TIMEOUT.quick) {
    return this.host.run(argv, { signal: ctx.signal, timeoutMs });
  }

  /**
   * Once per driver: the SSH host is the Proxmox node the spec names (qm acts on the node it
   * runs on), the disk storage holds images, and a storage for snippets is found.
   */
  private hostFacts(ctx: DriverContext): Promise<HostFacts> {
    this.facts ??= this.discover(ctx).catch((err: unknown) => {
      this.facts = undefined;
      throw err;
    });
    return this.facts;
  }

  private async discover(ctx: DriverContext): Promise<HostFacts> {
    const where = `targets.${this.name}`;
    let uname: string, images: string, snippets: string;
    try {
      [uname, images, snippets] = await Promise.all([
        this.run(['uname', '-n'], ctx).then((r) => r.stdout),
        this.run(pvesmStatusArgv('images'), ctx).then((r) => r.stdout),
        this.run(pvesmStatusArgv('snippets'), ctx).then((r) => r.stdout),
      ]);
    } catch (err) {
      if (/not found|No such file/i.test(commandStderr(err) ?? '')) {
        throw new KubedosError(`${where}: ${this.host.label} is not a Proxmox VE node (no pvesm there)`, 'point ssh.host at a Proxmox VE node', { cause: err });
      }
      throw err;
    }
    const node = uname.trim().split('.')[0]!;
    if (node !== this.spec.node) {
      throw new ConfigError(`${where}.node: ${this.host.label} is Proxmox node "${node}", the spec names "${this.spec.node}"`, 'qm creates VMs on the node it runs on: make ssh.host and node agree');
    }
    const disk = parsePvesmStatus(images).find((s) => s.name === this.spec.storage);
    if (!disk?.active) {
      throw new ConfigError(`${where}.storage: storage "${this.spec.storage}" on ${node} is ${disk ? 'not active' : 'missing or cannot hold disk images'}`, `one of: ${parsePvesmStatus(images).map((s) => s.name).join(', ') || '(none)'}`);
    }
    const withSnippets = parsePvesmStatus(snippets).filter((s) => s.active);
    const snippetStorage = this.snippetStorageOption ?? (withSnippets.find((s) => s.name === 'local') ?? withSnippets[0])?.name;
    if (!snippetStorage || !withSnippets.some((s) => s.name === snippetStorage)) {
      throw new ConfigError(
        `${where}: no active storage on ${node} holds snippets${snippetStorage ? ` (not ${snippetStorage})` : ''}; the nodes' cloud-init identity is delivered as snippets`,
        'enable the content type on a directory storage, e.g. `pvesm set local --content iso,vztmpl,backup,snippets`',
      );
    }
    const probe = (await this.run(pvesmPathArgv(`${snippetStorage}:snippets/kubedos-probe.yaml`), ctx)).stdout.trim();
    if (!probe.startsWith('/')) throw new KubedosError(`${where}: pvesm path gave ${JSON.stringify(probe)} for a snippet, not a file path`);
    const snippetDir = path.posix.dirname(probe);
    await this.host.mkdir(snippetDir, 0o755);
    logger.debug({ target: this.name, node, snippetStorage, snippetDir }, 'proxmox host checked');
    return { snippetStorage, snippetDir };
  }

  private async qmList(ctx: DriverContext): Promise<QmListEntry[]> {
    return parseQmList((await this.run(qmListArgv(), ctx)).stdout);
  }

  private qmConfig(vmid: number, ctx: DriverContext): Promise<Record<string, string> | undefined> {
    return this.ofVm(qmConfigArgv(vmid), parseQmConfig, ctx);
  }

  private qmStatus(vmid: number, ctx: DriverContext): Promise<string | undefined> {
    return this.ofVm(qmStatusArgv(vmid), parseQmStatus, ctx);
  }

  /** What a qm command about one VM printed, parsed; undefined when the VM is gone (destroyed between `qm list` and now). */
  private async ofVm<T>(argv: readonly string[], parse: (stdout: string) => T | undefined, ctx: DriverContext): Promise<T | undefined> {
    try {
      return parse((await this.run(argv, ctx)).stdout);
    } catch (err) {
      if (vmMissing(commandStderr(err) ?? '')) return undefined;
      throw err;
    }
  }

  /** The record of a VM when, and only when, it is ours (see the file comment). */
  private ownedRecord(vmid: number, config: Record<string, string> | undefined): VmRecord | undefined {
    if (!config || !this.vmids.inRange(vmid) || !tagsOf(config.tags).includes(KUBEDOS_TAG)) return undefined;
    return decodeDescription(config.description);
  }

  /** Our VMs for a node id (normally one; two only after a create was lost mid-flight and retried). */
  private async findOwned(nodeId: string, ctx: DriverContext, options: { scanAll?: boolean; listed?: QmListEntry[] } = {}): Promise<OwnedVm[]> {
    const listed = options.listed ?? (await this.qmList(ctx));
    const candidates = listed.filter((v) => this.vmids.inRange(v.vmid) && (options.scanAll || v.name === nodeId));
    const found: OwnedVm[] = [];
    for (const v of candidates) {
      const config = await this.qmConfig(v.vmid, ctx);
      const record = this.ownedRecord(v.vmid, config);
      if (record?.nodeId === nodeId) found.push({ vmid: v.vmid, status: v.status, record, config: config! });
    }
    if (found[0]) this.known.set(nodeId, { vmid: found[0].vmid, hostname: found[0].record.identity.hostname });
    return found;
  }

  /** vmid and hostname of a node, from memory or the host; TargetNodeNotFoundError when absent. */
  private async lookup(nodeId: string, ctx: DriverContext, action: string): Promise<{ vmid: number; hostname: string }> {
    checkNodeId(nodeId, NODE_ID_RULE);
    const cached = this.known.get(nodeId);
    if (cached) return cached;
    const [vm] = await this.findOwned(nodeId, ctx);
    if (!vm) throw new TargetNodeNotFoundError(this.name, nodeId, action);
    return { vmid: vm.vmid, hostname: vm.record.identity.hostname };
  }

  /** Snippet file names of a node carry its machine-id: each identity attempt has its own files. */
  private snippetNames(nodeId: string, machineId: string): { user: string; meta: string } {
    const stem = `kubedos-${nodeId}-${machineId.slice(0, 12)}`;
    return { user: `${stem}.user.yaml`, meta: `${stem}.meta.yaml` };
  }

  async prepare(image: ImageSource, ctx: DriverContext): Promise<PreparedImage> {
    const artifact = image.artifact;
    if (!artifact) throw new ArtifactRequiredError(this.name, 'proxmox', proxmox.accepts);
    if (artifact.format !== 'qcow2') throw new ArtifactRequiredError(this.name, 'proxmox', proxmox.accepts, artifact.format);
    if (!/^[0-9a-f]{64}$/.test(artifact.sha256)) throw new TypeError(`invalid artifact sha256 ${JSON.stringify(artifact.sha256)}`);
    await this.hostFacts(ctx);
    await this.host.mkdir(this.imageDir, 0o755);
    const location = path.posix.join(this.imageDir, `${artifact.sha256}.qcow2`);
    ctx.progress?.({ step: `prepare ${image.name} on ${this.host.label}` });
    await this.host.putFile({ path: artifact.path, sha256: artifact.sha256, size: artifact.size }, location, 0o444, ctx);
    return { digest: image.digest, location };
  }

  async create(request: CreateNodeRequest, ctx: DriverContext): Promise<PublicIdentity> {
    const { nodeId, labels, identity } = request;
    checkNodeId(nodeId, NODE_ID_RULE);
    if (!request.image.location.startsWith(`${this.imageDir}/`) || /[,\s]/.test(request.image.location)) {
      throw new TypeError(`image location ${JSON.stringify(request.image.location)} is not a prepared image of ${this.name}`);
    }
    const facts = await this.hostFacts(ctx);
    const listed = await this.qmList(ctx);
    const existing = await this.findOwned(nodeId, ctx, { listed });
    if (existing[0]) {
      // A retried activity: keep the VM, and return the identity it really has.
      const { record } = existing[0];
      if (record.labels.imageDigest !== labels.imageDigest) {
        throw new NodeImageConflictError(`${this.name} (VM ${existing[0].vmid})`, nodeId, record.labels.imageDigest);
      }
      return record.identity;
    }

    // The identity, as standard NoCloud files (the private host key: 0600).
    const seed = renderNocloud({ instanceId: nodeId, identity, authorizedKeys: request.authorizedKeys });
    const names = this.snippetNames(nodeId, identity.machineId);
    await this.host.writeFile(path.posix.join(facts.snippetDir, names.user), seed['user-data'], 0o600);
    await this.host.writeFile(path.posix.join(facts.snippetDir, names.meta), seed['meta-data'], 0o600);

    const record: VmRecord = { kubedos: 1, nodeId, labels, identity: publicPart(identity) };
    const base: Omit<QmCreateOptions, 'vmid'> = {
      name: nodeId,
      memoryMiB: Math.floor(this.spec.memory / MiB),
      cores: this.spec.cpus,
      storage: this.spec.storage,
      bridge: this.spec.bridge,
      image: request.image.location,
      tags: vmTags(labels),
      description: encodeDescription(record),
      uuid: machineIdUuid(identity.machineId),
      cloudInit: { user: `${facts.snippetStorage}:snippets/${names.user}`, meta: `${facts.snippetStorage}:snippets/${names.meta}` },
    };
    const vmid = await this.vmids.allocate(nodeId, listed, async (id) => {
      await reporting(ctx, `qm create ${id} (${nodeId}: import disk)`, () => this.run(qmCreateArgv({ ...base, vmid: id }), ctx, TIMEOUT.create));
    }, () => this.qmList(ctx));
    this.known.set(nodeId, { vmid, hostname: identity.hostname });
    logger.info({ target: this.name, nodeId, vmid }, 'proxmox vm created');
    return publicPart(identity);
  }

  async start(nodeId: string, ctx: DriverContext): Promise<void> {
    checkNodeId(nodeId, NODE_ID_RULE);
    // Ownership checked afresh (not from memory): `qm start` must never reach a VM that is not ours.
    const [vm] = await this.findOwned(nodeId, ctx);
    if (!vm) throw new TargetNodeNotFoundError(this.name, nodeId, 'start');
    const { vmid, status } = vm;
    const { hostname } = vm.record.identity;
    await this.consoles.makeDir();
    if (status !== 'stopped') {
      // A retried start: the VM runs (or is paused, prelaunch…); keep (or restore) a reader until readiness went by.
      if (!consoleReady(await this.consoles.read(nodeId), hostname)) await this.consoles.ensure(nodeId, vmid, hostname, ctx);
      return;
    }
    // A console from an earlier run must not report readiness for this one.
    await this.consoles.stop(nodeId);
    await this.host.remove(this.consoles.logOf(nodeId));
    await this.consoles.start(nodeId, vmid, hostname, ctx);
    try {
      await reporting(ctx, `qm start ${vmid}`, () => this.run(qmStartArgv(vmid), ctx, TIMEOUT.start));
    } catch (err) {
      await this.consoles.stop(nodeId);
      throw err;
    }
    logger.info({ target: this.name, nodeId, vmid }, 'proxmox vm started');
  }

  async address(nodeId: string, ctx: DriverContext): Promise<NodeAddress> {
    const { vmid } = await this.lookup(nodeId, ctx, 'locate');
    let output: string;
    try {
      output = (await this.run(qmGuestInterfacesArgv(vmid), ctx)).stdout;
    } catch (err) {
      const stderr = commandStderr(err) ?? '';
      if (/guest agent|not running/i.test(stderr)) throw new GuestAgentUnavailableError(nodeId, this.name, stderr.trim());
      throw err;
    }
    const ip = guestIpv4(output);
    if (!ip) throw new GuestAgentUnavailableError(nodeId, this.name, 'the guest agent reports no IPv4 address yet');
    return { host: ip, ports: { 22: 22 } };
  }

  /** Whether the console showed the readiness line; a VM that stopped before it is an error. */
  async readiness(nodeId: string, ctx: DriverContext): Promise<boolean> {
    const { vmid, hostname } = await this.lookup(nodeId, ctx, 'check');
    const log = await this.consoles.read(nodeId);
    if (consoleReady(log, hostname)) return true;
    const status = await this.qmStatus(vmid, ctx);
    if (status === undefined || status === 'stopped') {
      this.known.delete(nodeId);
      throw new NodeNotRunningError(nodeId, this.name, log.trimEnd().split('\n').slice(-15).join('\n'));
    }
    // A reader that died (killed by hand, a host reboot) is restarted: late, but a slow boot is still seen.
    return this.consoles.ensure(nodeId, vmid, hostname, ctx);
  }

  async destroy(nodeId: string, ctx: DriverContext): Promise<void> {
    checkNodeId(nodeId, NODE_ID_RULE);
    const facts = await this.hostFacts(ctx);
    let owned = await this.findOwned(nodeId, ctx);
    // Renamed by hand? Ours are still recognised by their description.
    if (owned.length === 0) owned = await this.findOwned(nodeId, ctx, { scanAll: true });
    for (const vm of owned) await this.destroyVm(vm, nodeId, ctx);
    this.known.delete(nodeId);
    await this.consoles.stop(nodeId);
    const prefix = `kubedos-${nodeId}-`;
    const snippets = (await this.host.readdir(facts.snippetDir))
      .filter((file) => file.startsWith(prefix) && /^[0-9a-f]{12}\.(user|meta)\.yaml$/.test(file.slice(prefix.length)))
      .map((file) => path.posix.join(facts.snippetDir, file));
    await this.run(['rm', '-f', '--', this.consoles.logOf(nodeId), ...snippets], ctx);
  }

  /** Stop and destroy one VM; the ownership check is repeated right here, where it matters. */
  private async destroyVm({ vmid, status, config }: OwnedVm, nodeId: string, ctx: DriverContext): Promise<void> {
    if (this.ownedRecord(vmid, config)?.nodeId !== nodeId) throw new NotOwnedVmError(this.name, vmid, nodeId);
    const locked = config.lock !== undefined;
    if (status !== 'stopped') await reporting(ctx, `qm stop ${vmid}`, () => this.run(qmStopArgv(vmid, locked), ctx, TIMEOUT.start));
    await reporting(ctx, `qm destroy ${vmid}`, () => this.run(qmDestroyArgv(vmid, locked), ctx, TIMEOUT.start));
    logger.info({ target: this.name, nodeId, vmid }, 'proxmox vm destroyed');
  }

  async list(filter: { platform?: string; fleet?: string }, ctx: DriverContext): Promise<OwnedNode[]> {
    const vms = (await this.qmList(ctx)).filter((v) => this.vmids.inRange(v.vmid));
    const found = await mapLimited(vms, 4, async (v) => {
      const record = this.ownedRecord(v.vmid, await this.qmConfig(v.vmid, ctx));
      return record ? { record, running: v.status !== 'stopped' } : undefined;
    });
    return found
      .filter((f): f is NonNullable<typeof f> => f !== undefined)
      .filter(({ record }) => (!filter.platform || record.labels.platform === filter.platform) && (!filter.fleet || record.labels.fleet === filter.fleet))
      .map(({ record, running }) => ({ nodeId: record.nodeId, labels: record.labels, identity: record.identity, running }))
      .sort((a, b) => a.nodeId.localeCompare(b.nodeId));
  }

  /** VM id of a node, for diagnostics and tests. */
  async vmidOf(nodeId: string, ctx: DriverContext = {}): Promise<number | undefined> {
    return (await this.findOwned(nodeId, ctx))[0]?.vmid;
  }

  async close(): Promise<void> {
    await this.host.close();
  }
}
