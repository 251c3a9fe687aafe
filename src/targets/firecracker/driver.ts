/**
 * The Firecracker target: nodes are microVMs on one or more hosts (this machine, or hosts reached
 * over the SSH layer: pinned host keys, argv-quoted commands, verified resumable uploads). Each
 * microVM is one firecracker process started by the jailer (its uid/gid, its chroot, its cgroup
 * limits) and configured through Firecracker's API on its unix socket, reached by SSH stream-local
 * forwarding (no API on a TCP port).
 *
 * - prepare: the bundle's four files (config, vmlinux, initrd, rootfs) are made present once per
 *   digest on every host, read-only, as `<chrootBase>/kubedos/<target>/images/<config sha256>/`
 *   (remotely: resumable, verified uploads). The rootfs must carry the image's overlay init.
 * - create: the least loaded host with room (limits: maxMicrovms, vCPU and memory
 *   oversubscription against the host's CPUs and MemTotal, NAT /30s) gets the node. Its jail is made
 *   in O(1) of the image size: hard links to the prepared kernel, initrd and read-only rootfs, and
 *   a sparse ext4 writable layer (metadata only) that the image's overlay init mounts over the
 *   root. The node's MMDS document (its identity as NoCloud meta-data/user-data, mmds.ts) is kept
 *   0600 in its state directory; node.json (labels, public identity, jail, tap, MAC, NAT block) is
 *   written last, so its presence means "created".
 * - start: one host command makes the tap (on the bridge, or with the /30's host address for NAT)
 *   and starts the jailer, unless a firecracker of this jail runs already (a retried step); then
 *   the API: machine-config, boot-source (the bundle's boot_args + the overlay init + for NAT the
 *   guest's address), the root drive read-only, the layer drive, eth0 on the tap, MMDS V2 on eth0
 *   and the document, InstanceStart. A microVM already running is left alone. No boot wait here:
 *   readiness is polled by the health check.
 * - readiness: `kubedos: ready <hostname>` on the serial console (firecracker's stdout, appended to
 *   console.log on the host); a microVM that exited first is an error with the console's tail.
 * - destroy: SendCtrlAltDel, a few seconds for the VM to exit, then SIGTERM/SIGKILL; then the tap,
 *   the jail, its cgroups, the NAT claim and the state directory, node.json last.
 * - list: one host command per host reads every node.json and which jails have a live firecracker,
 *   so a fresh worker (or one after a host-agent restart) finds everything KubeDos owns.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Duplex } from 'node:stream';
import { FIRECRACKER_MMDS_IFACE, type FirecrackerConfig } from '../../foundry/formats/firecracker';
import { OVERLAY_INIT_PATH, overlayKernelArgs } from '../../foundry/overlay-init';
import { debugfsRequestArgv } from '../../foundry/tools/debugfs';
import {
  ArtifactRequiredError,
  FirecrackerApiUnavailableError,
  FirecrackerBridgeMissingError,
  FirecrackerCapacityError,
  FirecrackerImageError,
  FirecrackerLaunchError,
  KubedosError,
  NodeAddressUnknownError,
  NodeImageConflictError,
  NodeNotRunningError,
  TargetNodeNotFoundError,
} from '../../errors';
import { logger } from '../../log';
import type { CreateNodeRequest, DriverContext, DriverEnvironment, ImageSource, NodeAddress, NodeLabels, OwnedNode, PreparedImage, TargetDriver } from '../driver';
import { reporting } from '../driver-support';
import { commandStderr, LocalHost, SshHost, type TargetHost } from '../host';
import { consoleReady, publicPart, type PublicIdentity } from '../identity';
import { mmdsDocument } from '../mmds';
import { FirecrackerApi, type InstanceInfo } from './api';
import { API_SOCKET, firecracker, natBlocks, type FirecrackerTargetSpec } from './index';
import { CREATE_SCRIPT, EXIT_NO_BRIDGE, jailerArgv, LAUNCH_SCRIPT, LIST_SCRIPT, NAT_SCRIPT, parseList, parsePlace, PLACE_SCRIPT, sh, TEARDOWN_SCRIPT, type PlaceFacts } from './host-scripts';
import { cgroupArgs, cgroupDirs, guestMac, jailId, natAddresses, natKernelArg, natTable, tapName } from './names';
import { hostCapacity, leastLoaded } from './placement';

const MiB = 2 ** 20;
const TIMEOUT = { quick: 60_000, create: 120_000, apiUp: 20_000, start: 180_000 } as const;
/** How long a microVM gets to exit after SendCtrlAltDel before it is killed. */
const SHUTDOWN_GRACE_MS = 10_000;
/** Drive ids and files inside a jail. */
const JAIL_FILES = { kernel: '/vmlinux', initrd: '/initrd', rootfs: '/rootfs.ext4', layer: '/layer.ext4' } as const;
/** The writable layer is the second drive: /dev/vdb in the guest (Firecracker attaches the root drive first). */
const LAYER_DISK = 'vdb';

export interface FirecrackerDriverOptions {
  /** Hosts to work on, in the order of `spec.hosts`. @default LocalHost / SshHost from the spec */
  hosts?: TargetHost[];
  /** Where the jailer's cgroups are on the hosts (destroy removes a node's). @default /sys/fs/cgroup */
  cgroupRoot?: string;
}

/** node.json: what a node is, on its host. */
export interface NodeRecordOnHost {
  kubedos: 1;
  nodeId: string;
  labels: NodeLabels;
  identity: PublicIdentity;
  /** PreparedImage.location: the images directory name on every host. */
  image: string;
  jailId: string;
  tap: string;
  mac: string;
  nat?: { index: number; host: string; guest: string };
  createdAt: string;
}

interface Located {
  host: number;
  record: NodeRecordOnHost;
}

/** A node id names directories and part of a jail id: keep it to a safe alphabet. */
function checkNodeId(nodeId: string): void {
  if (!/^[a-z0-9][a-z0-9.-]{0,120}$/.test(nodeId) || nodeId.includes('..')) throw new TypeError(`invalid node id ${JSON.stringify(nodeId)}`);
}

function parseRecord(text: string | undefined): NodeRecordOnHost | undefined {
  if (!text) return undefined;
  try {
    const r = JSON.parse(text) as NodeRecordOnHost;
    return r?.kubedos === 1 && typeof r.nodeId === 'string' && r.labels && r.identity ? r : undefined;
  } catch {
    return undefined;
  }
}

function tail(text: string, lines = 15): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

export class FirecrackerDriver implements TargetDriver {
  readonly type = 'firecracker' as const;
  private readonly hosts: TargetHost[];
  private readonly base: string;
  private readonly execName: string;
  private readonly cgroupRoot: string;
  /** node id → host index, once seen (start, readiness and destroy go straight there). */
  private readonly placed = new Map<string, number>();
  /** Creates in flight per host (counted as load by concurrent creates of this driver). */
  private readonly reserved: number[];
  private readonly natReady = new Map<number, Promise<void>>();
  private readonly bootArgs = new Map<string, Promise<string>>();

  constructor(
    readonly name: string,
    private readonly spec: FirecrackerTargetSpec,
    _env: DriverEnvironment,
    options: FirecrackerDriverOptions = {},
  ) {
    if (!/^[a-z][a-z0-9-]{0,62}$/.test(name)) throw new TypeError(`invalid target name ${JSON.stringify(name)}`);
    this.hosts = options.hosts ?? spec.hosts.map((h) => (h === 'local' ? new LocalHost() : new SshHost(h)));
    this.reserved = this.hosts.map(() => 0);
    this.base = `${spec.chrootBase}/kubedos/${name}`;
    this.execName = path.posix.basename(spec.firecracker);
    this.cgroupRoot = options.cgroupRoot ?? '/sys/fs/cgroup';
  }

  // --- where things are ---------------------------------------------------------------------

  private imagesDir(location: string): string {
    if (!/^[0-9a-f]{64}$/.test(location)) throw new TypeError(`image location ${JSON.stringify(location)} is not a prepared image of ${this.name}`);
    return `${this.base}/images/${location}`;
  }

  private nodesDir(): string {
    return `${this.base}/nodes`;
  }

  private nodeDir(nodeId: string): string {
    checkNodeId(nodeId);
    return `${this.nodesDir()}/${nodeId}`;
  }

  private jailDir(jail: string): string {
    return `${this.spec.chrootBase}/${this.execName}/${jail}`;
  }

  private socketPath(jail: string): string {
    return `${this.jailDir(jail)}/root${API_SOCKET}`;
  }

  private natClaim(index: number | undefined): string {
    return index === undefined ? '' : `${this.base}/nat/${index}`;
  }

  private marker(jail: string): string {
    return `--id=${jail}`;
  }

  private run(host: number, argv: readonly string[], ctx: DriverContext, timeoutMs: number = TIMEOUT.quick) {
    return this.hosts[host]!.run(argv, { signal: ctx.signal, timeoutMs });
  }

  private label(host: number): string {
    return this.hosts[host]!.label;
  }

  private openSocket(host: number, socket: string, signal?: AbortSignal): Promise<Duplex> {
    const h = this.hosts[host]!;
    if (h instanceof SshHost) return h.streamLocal(socket, signal);
    if (!h.connectUnix) throw new KubedosError(`host ${h.label} cannot open unix sockets`);
    return h.connectUnix(socket);
  }

  private api(host: number, nodeId: string, jail: string, signal?: AbortSignal): FirecrackerApi {
    return new FirecrackerApi(() => this.openSocket(host, this.socketPath(jail), signal), { target: this.name, nodeId });
  }

  // --- prepare ------------------------------------------------------------------------------

  prepare(image: ImageSource, ctx: DriverContext): Promise<PreparedImage> {
    return reporting(ctx, `prepare ${image.name}`, () => this.prepareImage(image, ctx));
  }

  private async prepareImage(image: ImageSource, ctx: DriverContext): Promise<PreparedImage> {
    const artifact = image.artifact;
    if (!artifact) throw new ArtifactRequiredError(this.name, 'firecracker', firecracker.accepts);
    if (artifact.format !== 'firecracker') throw new ArtifactRequiredError(this.name, 'firecracker', firecracker.accepts, artifact.format);
    if (!/^[0-9a-f]{64}$/.test(artifact.sha256)) throw new TypeError(`invalid artifact sha256 ${JSON.stringify(artifact.sha256)}`);
    const files = artifact.files ?? [];
    let config: FirecrackerConfig;
    try {
      config = JSON.parse(await fs.readFile(artifact.path, 'utf8')) as FirecrackerConfig;
    } catch (err) {
      throw new FirecrackerImageError(`${image.name}: the bundle's config ${artifact.path} is not a Firecracker config: ${(err as Error).message}`, 'rebuild the image with the firecracker output', { cause: err });
    }
    const byName = (name: string | undefined, role: string) => {
      const found = files.find((f) => f.file === name);
      if (!found) {
        throw new FirecrackerImageError(
          `${image.name}: the bundle's ${role} (${name ?? 'unnamed'}) was not fetched with its config; got ${files.map((f) => f.file).join(', ') || 'only the config'}`,
          "the deploy worker fetches every file of a multi-file format; publish the image's whole firecracker bundle",
        );
      }
      return found;
    };
    const rootDrive = config.drives?.find((d) => d.is_root_device);
    const parts = {
      'config.json': { path: artifact.path, sha256: artifact.sha256, size: artifact.size },
      vmlinux: byName(config['boot-source']?.kernel_image_path, 'kernel'),
      initrd: byName(config['boot-source']?.initrd_path, 'initrd'),
      'rootfs.ext4': byName(rootDrive?.path_on_host, 'root filesystem'),
    };
    const location = artifact.sha256;
    const dir = this.imagesDir(location);
    const done = await Promise.allSettled(
      this.hosts.map(async (host) => {
        await host.mkdir(dir, 0o755);
        for (const [name, part] of Object.entries(parts)) {
          ctx.progress?.({ step: `prepare ${image.name} ${name} on ${host.label}` });
          await host.putFile(part, `${dir}/${name}`, 0o444, ctx);
        }
        // The shared root is read-only: the image must be able to put its own writable layer over it
        // (checked on the host, whose e2fsprogs also makes the layers).
        const probe = await host.run(debugfsRequestArgv(`${dir}/rootfs.ext4`, `stat ${OVERLAY_INIT_PATH}`), { signal: ctx.signal, timeoutMs: TIMEOUT.quick }).then((r) => r.stdout, () => '');
        if (!/Inode:\s*\d+/.test(probe)) {
          await host.remove(dir);
          throw new FirecrackerImageError(`${image.name}: its rootfs has no ${OVERLAY_INIT_PATH}, which a Firecracker target needs to share one read-only root between microVMs`, 'rebuild the image with this version of KubeDos (the overlay init is part of every image)');
        }
      }),
    );
    const failed = done.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    logger.info({ target: this.name, image: image.name, location, hosts: this.hosts.map((h) => h.label) }, 'firecracker bundle prepared');
    return { digest: image.digest, location };
  }

  // --- create -------------------------------------------------------------------------------

  create(request: CreateNodeRequest, ctx: DriverContext): Promise<PublicIdentity> {
    return reporting(ctx, `create ${request.nodeId}`, () => this.createNode(request, ctx));
  }

  private async placeFacts(nodeId: string, ctx: DriverContext): Promise<PlaceFacts[]> {
    return Promise.all(this.hosts.map(async (_, i) => parsePlace((await this.run(i, sh(PLACE_SCRIPT, this.nodesDir(), nodeId), ctx)).stdout)));
  }

  private async createNode(request: CreateNodeRequest, ctx: DriverContext): Promise<PublicIdentity> {
    const { nodeId, labels, identity } = request;
    const nodeDir = this.nodeDir(nodeId);
    const images = this.imagesDir(request.image.location);
    const facts = await this.placeFacts(nodeId, ctx);
    const existing = facts.findIndex((f) => f.state === 'exists');
    if (existing >= 0) {
      // A retried activity: keep the node and return the identity it really has.
      const record = parseRecord(facts[existing]!.existing);
      if (!record) throw new KubedosError(`target ${this.name}: node ${nodeId} on ${this.label(existing)} has an unreadable node.json`, 'destroy the node; the fleet makes it again');
      if (record.labels.imageDigest !== labels.imageDigest) throw new NodeImageConflictError(`${this.name} (${this.label(existing)})`, nodeId, record.labels.imageDigest);
      this.placed.set(nodeId, existing);
      return record.identity;
    }
    const vm = { cpus: this.spec.cpus, memoryBytes: this.spec.memory };
    const net = this.spec.network;
    const limits = { ...this.spec.limits, natBlocks: 'nat' in net ? natBlocks(net.nat.subnet) : undefined };
    const loads = facts.map((f, i) => ({ capacity: hostCapacity(f, limits, vm), microvms: f.nodes + this.reserved[i]! }));
    // A node an earlier attempt began is made again where it was begun; otherwise the least loaded host.
    const partial = facts.findIndex((f) => f.state === 'partial');
    const host = partial >= 0 ? partial : leastLoaded(loads);
    if (host === undefined) throw new FirecrackerCapacityError(this.name, loads.map((l, i) => `${this.label(i)}: ${l.microvms}/${l.capacity}`));

    this.reserved[host]!++;
    try {
      const jail = jailId(this.name, nodeId);
      const args: (string | number)[] = [images, nodeDir, this.jailDir(jail), this.spec.uid, this.spec.gid, this.spec.layerSize];
      if ('nat' in net) args.push(`${this.base}/nat`, natBlocks(net.nat.subnet), nodeId);
      let out: string;
      try {
        out = (await this.run(host, sh(CREATE_SCRIPT, ...args), ctx, TIMEOUT.create)).stdout;
      } catch (err) {
        if (/exited with code 75/.test((err as Error).message)) throw new FirecrackerCapacityError(this.name, [`${this.label(host)}: ${commandStderr(err)?.trim() ?? 'NAT subnet full'}`]);
        throw err;
      }
      const natIndex = 'nat' in net ? Number(/^nat (\d+)$/m.exec(out)?.[1]) : undefined;
      if (natIndex !== undefined && !Number.isInteger(natIndex)) throw new KubedosError(`target ${this.name}: no NAT block was claimed on ${this.label(host)}: ${out.slice(0, 200)}`);
      const h = this.hosts[host]!;
      const doc = mmdsDocument({ instanceId: nodeId, identity, authorizedKeys: request.authorizedKeys });
      // The document holds the node's private host key: readable by root only, removed with the node.
      await h.writeFile(`${nodeDir}/mmds.json`, JSON.stringify(doc), 0o600);
      await h.writeFile(`${nodeDir}/jail`, jail);
      const record: NodeRecordOnHost = {
        kubedos: 1,
        nodeId,
        labels,
        identity: publicPart(identity),
        image: request.image.location,
        jailId: jail,
        tap: tapName(this.name, nodeId),
        mac: guestMac(this.name, nodeId),
        ...(natIndex !== undefined && 'nat' in net ? { nat: { index: natIndex, ...natAddresses(net.nat.subnet, natIndex) } } : {}),
        createdAt: new Date().toISOString(),
      };
      if (record.nat) record.nat = { index: record.nat.index, host: record.nat.host, guest: record.nat.guest };
      await h.writeFile(`${nodeDir}/node.json`, JSON.stringify(record));
      this.placed.set(nodeId, host);
      logger.info({ target: this.name, host: h.label, nodeId, jail }, 'firecracker node created');
      return record.identity;
    } finally {
      this.reserved[host]!--;
    }
  }

  // --- finding a node -----------------------------------------------------------------------

  private async readRecord(host: number, nodeId: string): Promise<NodeRecordOnHost | undefined> {
    return parseRecord((await this.hosts[host]!.readFile(`${this.nodeDir(nodeId)}/node.json`))?.toString('utf8'));
  }

  /** The node's host and record; undefined when no host has it. */
  private async locate(nodeId: string): Promise<Located | undefined> {
    checkNodeId(nodeId);
    const known = this.placed.get(nodeId);
    if (known !== undefined) {
      const record = await this.readRecord(known, nodeId);
      if (record) return { host: known, record };
      this.placed.delete(nodeId);
    }
    const found = await Promise.all(this.hosts.map((_, i) => this.readRecord(i, nodeId)));
    const host = found.findIndex((r) => r !== undefined);
    if (host < 0) return undefined;
    this.placed.set(nodeId, host);
    return { host, record: found[host]! };
  }

  private async pid(host: number, nodeId: string): Promise<number | undefined> {
    const pid = Number((await this.hosts[host]!.readFile(`${this.nodeDir(nodeId)}/pid`))?.toString('utf8').trim() ?? '0');
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  }

  private async runningPid(host: number, nodeId: string, jail: string): Promise<number | undefined> {
    const pid = await this.pid(host, nodeId);
    return pid !== undefined && (await this.hosts[host]!.isRunning(pid, this.marker(jail))) ? pid : undefined;
  }

  // --- start --------------------------------------------------------------------------------

  start(nodeId: string, ctx: DriverContext): Promise<void> {
    return reporting(ctx, `start ${nodeId}`, () => this.startNode(nodeId, ctx));
  }

  private ensureNat(host: number, ctx: DriverContext): Promise<void> {
    const net = this.spec.network;
    if (!('nat' in net)) return Promise.resolve();
    let ready = this.natReady.get(host);
    if (!ready) {
      ready = this.run(host, sh(NAT_SCRIPT, natTable(this.name), net.nat.subnet), ctx).then(() => undefined);
      ready.catch(() => this.natReady.delete(host));
      this.natReady.set(host, ready);
    }
    return ready;
  }

  /** The bundle's boot_args, from the prepared config on the host (read once per image). */
  private bundleBootArgs(host: number, location: string): Promise<string> {
    const key = `${host}:${location}`;
    let args = this.bootArgs.get(key);
    if (!args) {
      args = this.hosts[host]!.readFile(`${this.imagesDir(location)}/config.json`).then((data) => {
        const config = data ? (JSON.parse(data.toString('utf8')) as FirecrackerConfig) : undefined;
        if (!config?.['boot-source']) throw new FirecrackerImageError(`target ${this.name}: image ${location.slice(0, 12)} is not prepared on ${this.label(host)}`, 'prepare it again (the fleet does at its next deploy)');
        return config['boot-source'].boot_args;
      });
      args.catch(() => this.bootArgs.delete(key));
      this.bootArgs.set(key, args);
    }
    return args;
  }

  private async startNode(nodeId: string, ctx: DriverContext): Promise<void> {
    const found = await this.locate(nodeId);
    if (!found) throw new TargetNodeNotFoundError(this.name, nodeId, 'start');
    const { host, record } = found;
    const h = this.hosts[host]!;
    const nodeDir = this.nodeDir(nodeId);
    const net = this.spec.network;
    await this.ensureNat(host, ctx);
    const jailer = jailerArgv({
      jailer: this.spec.jailer,
      firecracker: this.spec.firecracker,
      jailId: record.jailId,
      uid: this.spec.uid,
      gid: this.spec.gid,
      chrootBase: this.spec.chrootBase,
      cgroupVersion: this.spec.cgroupVersion,
      cgroups: cgroupArgs({ version: this.spec.cgroupVersion, cpus: this.spec.cpus, memoryBytes: this.spec.memory }),
      apiSocket: API_SOCKET,
    });
    const netArg = 'bridge' in net ? net.bridge : `${record.nat!.host}/30`;
    let launched: string;
    try {
      const argv = sh(LAUNCH_SCRIPT, nodeDir, record.jailId, record.tap, 'bridge' in net ? 'bridge' : 'nat', netArg, this.spec.uid, this.spec.gid, this.socketPath(record.jailId), ...jailer);
      launched = (await this.run(host, argv, ctx)).stdout;
    } catch (err) {
      if ('bridge' in net && new RegExp(`exited with code ${EXIT_NO_BRIDGE}\\b`).test((err as Error).message)) throw new FirecrackerBridgeMissingError(this.name, h.label, net.bridge);
      throw err;
    }
    const m = /^(running|started) (\d+)$/m.exec(launched);
    if (!m) throw new KubedosError(`target ${this.name}: unexpected answer from the launch on ${h.label}: ${launched.slice(0, 200)}`);
    const pid = Number(m[2]);
    const api = this.api(host, nodeId, record.jailId, ctx.signal);
    try {
      const info = await this.waitForApi(api, host, nodeId, record.jailId, pid, ctx);
      if (info.state !== 'Not started') {
        logger.debug({ target: this.name, nodeId, state: info.state }, 'microVM already started');
        return;
      }
      // Pre-boot configuration is idempotent (each PUT replaces): a retried start redoes it whole.
      const mmds = (await h.readFile(`${nodeDir}/mmds.json`))?.toString('utf8');
      if (!mmds) throw new KubedosError(`target ${this.name}: node ${nodeId} on ${h.label} has no MMDS document`, 'destroy the node; the fleet makes it again');
      const bootArgs = [await this.bundleBootArgs(host, record.image), overlayKernelArgs(LAYER_DISK), ...(record.nat && 'nat' in net ? [natKernelArg(net.nat.subnet, record.nat.index, FIRECRACKER_MMDS_IFACE)] : [])].join(' ');
      const opts = { signal: ctx.signal };
      await api.call('PUT', '/machine-config', { vcpu_count: this.spec.cpus, mem_size_mib: Math.floor(this.spec.memory / MiB), smt: false }, opts);
      await api.call('PUT', '/boot-source', { kernel_image_path: JAIL_FILES.kernel, initrd_path: JAIL_FILES.initrd, boot_args: bootArgs }, opts);
      await api.call('PUT', '/drives/rootfs', { drive_id: 'rootfs', path_on_host: JAIL_FILES.rootfs, is_root_device: true, is_read_only: true }, opts);
      await api.call('PUT', '/drives/layer', { drive_id: 'layer', path_on_host: JAIL_FILES.layer, is_root_device: false, is_read_only: false }, opts);
      await api.call('PUT', `/network-interfaces/${FIRECRACKER_MMDS_IFACE}`, { iface_id: FIRECRACKER_MMDS_IFACE, host_dev_name: record.tap, guest_mac: record.mac }, opts);
      await api.call('PUT', '/mmds/config', { version: 'V2', network_interfaces: [FIRECRACKER_MMDS_IFACE], ipv4_address: '169.254.169.254' }, opts);
      await api.call('PUT', '/mmds', JSON.parse(mmds), opts);
      await api.call('PUT', '/actions', { action_type: 'InstanceStart' }, { ...opts, timeoutMs: TIMEOUT.start });
      logger.info({ target: this.name, host: h.label, nodeId, pid, launched: m[1] }, 'microVM started');
    } finally {
      api.close();
    }
  }

  /**
   * Alive and ours, asked again 200 ms later before saying no: while the launched process execs
   * (setsid, the jailer, firecracker) its /proc/<pid>/cmdline reads empty for an instant, and a
   * fresh-clone run here took such a read for a launch failure.
   */
  private async stillRunning(host: number, pid: number, marker: string): Promise<boolean> {
    if (await this.hosts[host]!.isRunning(pid, marker)) return true;
    await sleep(200);
    return this.hosts[host]!.isRunning(pid, marker);
  }

  /** GET / until the API answers; the process exiting meanwhile is a launch failure with its log. */
  private async waitForApi(api: FirecrackerApi, host: number, nodeId: string, jail: string, pid: number, ctx: DriverContext): Promise<InstanceInfo> {
    const deadline = Date.now() + TIMEOUT.apiUp;
    for (let delay = 20; ; delay = Math.min(delay * 2, 500)) {
      try {
        return await api.call<InstanceInfo>('GET', '/', undefined, { signal: ctx.signal, timeoutMs: 10_000 });
      } catch (err) {
        if (!(err instanceof FirecrackerApiUnavailableError)) throw err;
        if (!(await this.stillRunning(host, pid, jail))) {
          const dir = this.nodeDir(nodeId);
          const logs = await Promise.all(['firecracker.log', 'console.log'].map(async (f) => (await this.hosts[host]!.readFile(`${dir}/${f}`))?.toString('utf8') ?? ''));
          throw new FirecrackerLaunchError(this.name, nodeId, this.label(host), tail(logs.join('\n')));
        }
        if (Date.now() > deadline) throw err;
        await sleep(delay, undefined, { signal: ctx.signal });
      }
    }
  }

  // --- observing ----------------------------------------------------------------------------

  async address(nodeId: string): Promise<NodeAddress> {
    const found = await this.locate(nodeId);
    if (!found) throw new TargetNodeNotFoundError(this.name, nodeId, 'locate');
    if (found.record.nat) return { host: found.record.nat.guest, ports: { 22: 22 } };
    throw new NodeAddressUnknownError(this.name, nodeId, 'it is on a bridge: its address is the guest\'s own (DHCP), which KubeDos does not learn', 'use the readiness health check for bridged microVMs, or the NAT network mode', { retryable: false });
  }

  async readiness(nodeId: string): Promise<boolean> {
    const found = await this.locate(nodeId);
    if (!found) throw new TargetNodeNotFoundError(this.name, nodeId, 'check');
    const { host, record } = found;
    const consoleLog = async () => (await this.hosts[host]!.readFile(`${this.nodeDir(nodeId)}/console.log`))?.toString('utf8') ?? '';
    if (consoleReady(await consoleLog(), record.identity.hostname)) return true;
    if (await this.runningPid(host, nodeId, record.jailId)) return false;
    // It exited since the console was read: what it printed last says why (or that it did get ready).
    const last = await consoleLog();
    if (consoleReady(last, record.identity.hostname)) return true;
    throw new NodeNotRunningError(nodeId, `${this.name} (${this.label(host)})`, tail(last));
  }

  // --- destroy ------------------------------------------------------------------------------

  destroy(nodeId: string, ctx: DriverContext): Promise<void> {
    return reporting(ctx, `destroy ${nodeId}`, () => this.destroyNode(nodeId, ctx));
  }

  private async destroyNode(nodeId: string, ctx: DriverContext): Promise<void> {
    const nodeDir = this.nodeDir(nodeId);
    // Every host holding anything of the node (a create that died before node.json leaves a partial one).
    const holders = (await Promise.all(this.hosts.map(async (h, i) => ((await h.exists(nodeDir)) ? i : -1)))).filter((i) => i >= 0);
    for (const host of holders) {
      const record = await this.readRecord(host, nodeId);
      const jail = record?.jailId ?? jailId(this.name, nodeId);
      const tap = record?.tap ?? tapName(this.name, nodeId);
      const pid = await this.runningPid(host, nodeId, jail);
      if (pid) await this.shutdown(host, nodeId, jail, pid, ctx);
      const nat = record?.nat?.index ?? (await this.natIndexOf(host, nodeId));
      const cgroups = cgroupDirs(this.cgroupRoot, this.spec.cgroupVersion, this.execName, jail);
      await this.run(host, sh(TEARDOWN_SCRIPT, nodeDir, jail, this.jailDir(jail), tap, this.natClaim(nat), ...cgroups), ctx);
      logger.info({ target: this.name, host: this.label(host), nodeId }, 'firecracker node destroyed');
    }
    this.placed.delete(nodeId);
  }

  /** The NAT block a partial node claimed (its node.json was never written). */
  private async natIndexOf(host: number, nodeId: string): Promise<number | undefined> {
    if (!('nat' in this.spec.network)) return undefined;
    const h = this.hosts[host]!;
    for (const entry of await h.readdir(`${this.base}/nat`)) {
      if (/^\d+$/.test(entry) && (await h.readFile(`${this.base}/nat/${entry}/node`))?.toString('utf8').trim() === nodeId) return Number(entry);
    }
    return undefined;
  }

  /** SendCtrlAltDel (the guest reboots, which reboot=k makes a VM exit), then SIGTERM/SIGKILL after the grace. */
  private async shutdown(host: number, nodeId: string, jail: string, pid: number, ctx: DriverContext): Promise<void> {
    const h = this.hosts[host]!;
    const api = this.api(host, nodeId, jail, ctx.signal);
    try {
      const info = await api.call<InstanceInfo>('GET', '/', undefined, { timeoutMs: 5_000 });
      if (info.state === 'Running') {
        await api.call('PUT', '/actions', { action_type: 'SendCtrlAltDel' }, { timeoutMs: 5_000 });
        const deadline = Date.now() + SHUTDOWN_GRACE_MS;
        while (Date.now() < deadline && (await h.isRunning(pid, this.marker(jail)))) await sleep(250);
      }
    } catch (err) {
      logger.debug({ target: this.name, nodeId, err: (err as Error).message }, 'SendCtrlAltDel failed; signalling instead');
    } finally {
      api.close();
    }
    await h.stop(pid, this.marker(jail), 5_000);
  }

  async list(filter: { platform?: string; fleet?: string }, ctx: DriverContext): Promise<OwnedNode[]> {
    const perHost = await Promise.all(
      this.hosts.map(async (_, i) => parseList((await this.run(i, sh(LIST_SCRIPT, this.nodesDir()), ctx)).stdout).map((n) => ({ ...n, host: i }))),
    );
    const nodes: OwnedNode[] = [];
    for (const n of perHost.flat()) {
      const record = parseRecord(n.json);
      if (!record || record.nodeId !== n.name) continue;
      if (filter.platform && record.labels.platform !== filter.platform) continue;
      if (filter.fleet && record.labels.fleet !== filter.fleet) continue;
      this.placed.set(record.nodeId, n.host);
      nodes.push({ nodeId: record.nodeId, labels: record.labels, identity: record.identity, running: n.live });
    }
    return nodes.sort((a, b) => a.nodeId.localeCompare(b.nodeId));
  }

  /** The host a node is on (its label), for diagnostics and tests. */
  async hostOf(nodeId: string): Promise<string | undefined> {
    const found = await this.locate(nodeId);
    return found ? this.label(found.host) : undefined;
  }

  async close(): Promise<void> {
    await Promise.all(this.hosts.map((h) => h.close()));
  }
}
