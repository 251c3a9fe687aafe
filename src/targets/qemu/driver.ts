/**
 * The QEMU/KVM target: nodes are VMs on this machine or on a host reached over SSH — the same
 * argv either way (src/targets/host.ts runs it locally or through the SSH layer).
 *
 * - prepare: the verified qcow2 (or raw) artifact is made present once per digest as
 *   `<state>/images/<sha256>.<format>` (read-only): hard-linked or copied locally, uploaded with
 *   resume and remote verification to a remote host.
 * - create: a qcow2 linked clone on that base (`qemu-img create -b`, instant whatever the image
 *   size), a private copy of the OVMF variable store, the node's NoCloud `cidata` seed (its
 *   identity: hostname, host key, authorized keys, machine-id; see nocloud.ts), then identity.json
 *   (public part) and labels.json — the last file written, so its presence means "created".
 * - start: qemu-system-x86_64 `-daemonize` (KVM when usable there, else TCG; OVMF; virtio disk and
 *   seed; serial console to console.log; QMP on a unix socket; the machine-id as SMBIOS UUID so
 *   systemd boots with it), with user-mode networking forwarding a free host port to the guest's
 *   22, or a tap on a named bridge. The VM is its own session: it outlives the worker, and is
 *   found again through its pid file (checked against its command line, never a recycled pid).
 * - readiness: the console shows `kubedos: ready <hostname>` (the image's readiness unit), which
 *   the image prints only after first boot applied the seed.
 * - destroy: QMP `quit` (locally), SIGTERM, then SIGKILL; then the node's directory — clone,
 *   seed, variables, logs, sockets — goes. Nothing is left.
 *
 * State per node: `<state>/nodes/<nodeId>/` with labels.json, identity.json, disk.qcow2,
 * seed.qcow2 (0600: it holds the private host key), OVMF_VARS.fd, console.log, qemu.pid,
 * vm.json (port, accel, socket), qmp.sock. `<state>` is the local state directory for
 * `host: local`, and `~/.local/state/kubedos/targets/<name>` of the SSH user on a remote host.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { cpSparseArgv } from '../../foundry/tools/cp';
import { qemuImgCreateOverlayArgv } from '../../foundry/tools/qemu-img';
import { qemuVmArgv, type QemuVmNetwork } from '../../foundry/tools/qemu-system';
import { ArtifactRequiredError, NodeAddressUnknownError, NodeImageConflictError, NodeNotRunningError, TargetNodeNotFoundError } from '../../errors';
import { freePort } from '../../exec/ports';
import { logger } from '../../log';
import { OVMF_CODE, OVMF_VARS, qemu, type QemuTargetSpec } from './index';
import { sha256OfFile } from '../../store/transfer';
import type { CreateNodeRequest, DriverContext, DriverEnvironment, ImageSource, NodeAddress, NodeLabels, OwnedNode, PreparedImage, TargetDriver } from '../driver';
import { checkNodeId, reporting } from '../driver-support';
import { commandStderr, LocalHost, SshHost, type TargetHost } from '../host';
import { consoleReady, machineIdUuid, publicPart, type PublicIdentity } from '../identity';
import { writeNocloudSeed } from '../nocloud';
import { QmpClient } from './qmp';

const MiB = 1024 * 1024;
/** unix socket paths are limited to 108 bytes (sun_path); leave a margin. */
const MAX_SOCKET_PATH = 100;
const START_ATTEMPTS = 5;

export interface QemuDriverOptions {
  /** The host to work on; default: this machine for `host: local`, else an SSH host from the spec. */
  host?: TargetHost;
  /** State directory on a remote host. @default `$HOME/.local/state/kubedos/targets/<name>` there */
  remoteStateDir?: string;
  /** @default OVMF_CODE */
  ovmfCode?: string;
  /** @default OVMF_VARS */
  ovmfVars?: string;
}

/** What start records about a running VM. */
interface VmState {
  pid: number;
  accel: 'kvm' | 'tcg';
  /** Host port forwarded to the guest's 22 (user networking). */
  sshPort?: number;
  qmpSocket: string;
  startedAt: string;
}

type StoredIdentity = PublicIdentity & { nodeId: string; imageDigest: string };

/** A stable, locally administered MAC for a node (bridge networking). */
export function nodeMac(nodeId: string): string {
  const h = createHash('sha256').update(`mac:${nodeId}`).digest();
  return ['52', '54', '00', ...[...h.subarray(0, 3)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

/** The base images a linked clone can sit on: the formats the descriptor accepts. */
function backingFormat(format: string): 'qcow2' | 'raw' | undefined {
  return format === 'qcow2' || format === 'raw' ? format : undefined;
}

function parseJson<T>(data: Buffer | undefined): T | undefined {
  if (!data) return undefined;
  try {
    return JSON.parse(data.toString('utf8')) as T;
  } catch {
    return undefined;
  }
}

export class QemuDriver implements TargetDriver {
  readonly type = 'qemu' as const;
  private readonly host: TargetHost;
  private rootDir?: Promise<string>;

  constructor(
    readonly name: string,
    private readonly spec: QemuTargetSpec,
    private readonly env: DriverEnvironment,
    private readonly options: QemuDriverOptions = {},
  ) {
    this.host = options.host ?? (spec.host === 'local' ? new LocalHost() : new SshHost(spec.host));
  }

  /** The state directory on the host (resolved once). */
  private root(signal?: AbortSignal): Promise<string> {
    if (!this.rootDir) {
      const resolving = this.host.local
        ? Promise.resolve(this.env.stateDir)
        : this.options.remoteStateDir !== undefined
          ? Promise.resolve(this.options.remoteStateDir)
          : this.host.homeStateDir(this.name, signal);
      this.rootDir = resolving.catch((err: unknown) => {
        this.rootDir = undefined;
        throw err;
      });
    }
    return this.rootDir;
  }

  private async nodeDir(nodeId: string, signal?: AbortSignal): Promise<string> {
    checkNodeId(nodeId);
    return path.posix.join(await this.root(signal), 'nodes', nodeId);
  }

  /** Marker on the VM's command line: its pid file path, unique per node. */
  private marker(dir: string): string {
    return path.posix.join(dir, 'qemu.pid');
  }

  private async readJson<T>(file: string): Promise<T | undefined> {
    return parseJson<T>(await this.host.readFile(file));
  }

  /** The VM's pid when it is running (pid file, else vm.json), else undefined. */
  private async runningPid(dir: string): Promise<number | undefined> {
    const fromFile = Number((await this.host.readFile(path.posix.join(dir, 'qemu.pid')))?.toString('utf8').trim() ?? '0');
    const fromState = (await this.readJson<VmState>(path.posix.join(dir, 'vm.json')))?.pid ?? 0;
    for (const pid of new Set([fromFile, fromState])) {
      if (Number.isInteger(pid) && pid > 0 && (await this.host.isRunning(pid, this.marker(dir)))) return pid;
    }
    return undefined;
  }

  prepare(image: ImageSource, ctx: DriverContext): Promise<PreparedImage> {
    return reporting(ctx, `prepare ${image.name}`, () => this.prepareImage(image, ctx));
  }

  private async prepareImage(image: ImageSource, ctx: DriverContext): Promise<PreparedImage> {
    const artifact = image.artifact;
    if (!artifact) throw new ArtifactRequiredError(this.name, 'qemu', qemu.accepts);
    const format = backingFormat(artifact.format);
    if (!format) throw new ArtifactRequiredError(this.name, 'qemu', qemu.accepts, artifact.format);
    const dir = path.posix.join(await this.root(ctx.signal), 'images');
    await this.host.mkdir(dir, 0o755);
    const location = path.posix.join(dir, `${artifact.sha256}.${format}`);
    ctx.progress?.({ step: `prepare ${image.name} on ${this.host.label}` });
    await this.host.putFile({ path: artifact.path, sha256: artifact.sha256, size: artifact.size }, location, 0o444, ctx);
    return { digest: image.digest, location };
  }

  create(request: CreateNodeRequest, ctx: DriverContext): Promise<PublicIdentity> {
    return reporting(ctx, `create ${request.nodeId}`, () => this.createNode(request, ctx));
  }

  private async createNode(request: CreateNodeRequest, ctx: DriverContext): Promise<PublicIdentity> {
    const dir = await this.nodeDir(request.nodeId, ctx.signal);
    const existing = await this.readJson<NodeLabels>(path.posix.join(dir, 'labels.json'));
    if (existing) {
      if (existing.imageDigest !== request.labels.imageDigest) {
        throw new NodeImageConflictError(this.name, request.nodeId, existing.imageDigest);
      }
      const { nodeId: _n, imageDigest: _d, ...identity } = (await this.readJson<StoredIdentity>(path.posix.join(dir, 'identity.json')))!;
      return identity;
    }
    // A half-made node (an attempt that died before labels.json) is made again from scratch.
    const stale = await this.runningPid(dir);
    if (stale) await this.host.stop(stale, this.marker(dir), 5_000);
    await this.host.remove(dir);
    await this.host.mkdir(dir, 0o700);

    const run = { signal: ctx.signal, timeoutMs: 120_000 };
    const base = backingFormat(path.posix.extname(request.image.location).slice(1)) ?? 'qcow2';
    await this.host.run(qemuImgCreateOverlayArgv(path.posix.join(dir, 'disk.qcow2'), request.image.location, base), run);
    await this.host.run(cpSparseArgv(this.options.ovmfVars ?? OVMF_VARS, path.posix.join(dir, 'OVMF_VARS.fd')), run);
    await this.writeSeed(request, path.posix.join(dir, 'seed.qcow2'), ctx);

    const identity: StoredIdentity = { nodeId: request.nodeId, ...publicPart(request.identity), imageDigest: request.labels.imageDigest };
    await this.host.writeFile(path.posix.join(dir, 'identity.json'), JSON.stringify(identity));
    await this.host.writeFile(path.posix.join(dir, 'labels.json'), JSON.stringify(request.labels));
    return publicPart(request.identity);
  }

  /** The NoCloud seed, made on this machine (mkfs.vfat + mcopy) and put on the host. */
  private async writeSeed(request: CreateNodeRequest, dest: string, ctx: DriverContext): Promise<void> {
    const input = { instanceId: request.nodeId, identity: request.identity, authorizedKeys: request.authorizedKeys };
    if (this.host.local) {
      await writeNocloudSeed(input, dest, { signal: ctx.signal });
      return;
    }
    const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-seed-'));
    try {
      const local = path.join(tmp, 'seed.qcow2');
      await writeNocloudSeed(input, local, { signal: ctx.signal });
      const { sha256, size } = await sha256OfFile(local);
      await this.host.putFile({ path: local, sha256, size }, dest, 0o600, ctx);
    } finally {
      await fs.rm(tmp, { recursive: true, force: true });
    }
  }

  /** Host ports already recorded by this target's other VMs (remote port choice avoids them). */
  private async usedPorts(root: string): Promise<Set<number>> {
    const used = new Set<number>();
    for (const id of await this.host.readdir(path.posix.join(root, 'nodes'))) {
      const vm = await this.readJson<VmState>(path.posix.join(root, 'nodes', id, 'vm.json'));
      if (vm?.sshPort) used.add(vm.sshPort);
    }
    return used;
  }

  private async pickPort(root: string): Promise<number> {
    if (this.host.local) return freePort(this.host.forwardBind);
    // Remotely nothing can be asked for a free port: pick one; QEMU refuses a taken one (retried).
    const used = await this.usedPorts(root);
    for (;;) {
      const port = 20_000 + Math.floor(Math.random() * 40_000);
      if (!used.has(port)) return port;
    }
  }

  private async qmpSocketPath(dir: string): Promise<string> {
    const inDir = path.posix.join(dir, 'qmp.sock');
    if (Buffer.byteLength(inDir) <= MAX_SOCKET_PATH) return inDir;
    return `/tmp/kubedos-qmp-${createHash('sha256').update(dir).digest('hex').slice(0, 24)}.sock`;
  }

  start(nodeId: string, ctx: DriverContext): Promise<void> {
    return reporting(ctx, `start ${nodeId}`, () => this.startVm(nodeId, ctx));
  }

  private async startVm(nodeId: string, ctx: DriverContext): Promise<void> {
    const dir = await this.nodeDir(nodeId, ctx.signal);
    const labels = await this.readJson<NodeLabels>(path.posix.join(dir, 'labels.json'));
    if (!labels) throw new TargetNodeNotFoundError(this.name, nodeId, 'start');
    if (await this.runningPid(dir)) return;
    const identity = (await this.readJson<StoredIdentity>(path.posix.join(dir, 'identity.json')))!;
    const accel = this.spec.accel === 'auto' ? (await this.host.accel()).mode : this.spec.accel;
    const qmpSocket = await this.qmpSocketPath(dir);
    const pidFile = path.posix.join(dir, 'qemu.pid');
    const serialFile = path.posix.join(dir, 'console.log');
    const root = await this.root(ctx.signal);

    for (let attempt = 1; ; attempt++) {
      // A console from an earlier run must not report readiness for this one.
      for (const stale of [pidFile, qmpSocket, serialFile]) await this.host.remove(stale);
      let sshPort: number | undefined;
      let network: QemuVmNetwork;
      if (this.spec.network === 'user') {
        sshPort = await this.pickPort(root);
        network = { type: 'user', forwards: [{ bind: this.host.forwardBind, hostPort: sshPort, guestPort: 22 }] };
      } else {
        network = { type: 'bridge', bridge: this.spec.network.bridge, mac: nodeMac(nodeId) };
      }
      const argv = qemuVmArgv({
        name: nodeId,
        accel,
        cpus: this.spec.cpus,
        memoryMiB: Math.floor(this.spec.memory / MiB),
        ovmfCode: this.options.ovmfCode ?? OVMF_CODE,
        ovmfVars: path.posix.join(dir, 'OVMF_VARS.fd'),
        disk: path.posix.join(dir, 'disk.qcow2'),
        seed: path.posix.join(dir, 'seed.qcow2'),
        uuid: machineIdUuid(identity.machineId),
        network,
        serialFile,
        qmpSocket,
        pidFile,
        daemonize: true,
      });
      try {
        // Returns once the VM runs in the background (or QEMU refused to start it).
        await this.host.run(argv, { signal: ctx.signal, timeoutMs: 120_000 });
      } catch (err) {
        const stderr = commandStderr(err) ?? '';
        const portTaken = sshPort !== undefined && /host forwarding rule|Address already in use/i.test(stderr);
        if (portTaken && attempt < START_ATTEMPTS) {
          logger.debug({ nodeId, sshPort, attempt }, 'forwarded port taken; trying another');
          continue;
        }
        throw err;
      }
      const pid = Number((await this.host.readFile(pidFile))?.toString('utf8').trim() ?? '0');
      const vm: VmState = { pid, accel, sshPort, qmpSocket, startedAt: new Date().toISOString() };
      await this.host.writeFile(path.posix.join(dir, 'vm.json'), JSON.stringify(vm));
      logger.info({ target: this.name, host: this.host.label, nodeId, pid, accel, sshPort }, 'vm started');
      return;
    }
  }

  async address(nodeId: string, ctx: DriverContext): Promise<NodeAddress> {
    const dir = await this.nodeDir(nodeId, ctx.signal);
    const vm = await this.readJson<VmState>(path.posix.join(dir, 'vm.json'));
    if (!vm) throw new NodeAddressUnknownError(this.name, nodeId, 'it has not been started');
    if (vm.sshPort === undefined) {
      throw new NodeAddressUnknownError(this.name, nodeId, `it is on bridge ${JSON.stringify(this.spec.network)}: its address is the guest's own (DHCP), which KubeDos does not learn`, 'use the readiness health check for bridged QEMU nodes', { retryable: false });
    }
    return { host: this.host.address, ports: { 22: vm.sshPort } };
  }

  /**
   * Whether the console shows the readiness line. A VM that is no longer running (it crashed, or
   * the guest powered off) is an error, with the console's last lines, rather than a long wait.
   */
  async readiness(nodeId: string, ctx: DriverContext): Promise<boolean> {
    const dir = await this.nodeDir(nodeId, ctx.signal);
    const identity = await this.readJson<StoredIdentity>(path.posix.join(dir, 'identity.json'));
    if (!identity) throw new TargetNodeNotFoundError(this.name, nodeId, 'check');
    const log = (await this.host.readFile(path.posix.join(dir, 'console.log')))?.toString('utf8') ?? '';
    if (consoleReady(log, identity.hostname)) return true;
    if (!(await this.runningPid(dir))) {
      throw new NodeNotRunningError(nodeId, this.name, log.trimEnd().split('\n').slice(-15).join('\n'));
    }
    return false;
  }

  destroy(nodeId: string, ctx: DriverContext): Promise<void> {
    return reporting(ctx, `destroy ${nodeId}`, () => this.destroyVm(nodeId, ctx));
  }

  private async destroyVm(nodeId: string, ctx: DriverContext): Promise<void> {
    const dir = await this.nodeDir(nodeId, ctx.signal);
    const vm = await this.readJson<VmState>(path.posix.join(dir, 'vm.json'));
    const pid = await this.runningPid(dir);
    if (pid) {
      // QMP quit where the socket is reachable (locally); SIGTERM (which QEMU treats alike), then SIGKILL.
      if (this.host.connectUnix && vm?.qmpSocket && (await this.quitByQmp(vm.qmpSocket))) {
        for (let i = 0; i < 40 && (await this.host.isRunning(pid, this.marker(dir))); i++) await sleep(250);
      }
      await this.host.stop(pid, this.marker(dir), 10_000);
    }
    if (vm?.qmpSocket && !vm.qmpSocket.startsWith(`${dir}/`)) await this.host.remove(vm.qmpSocket);
    await this.host.remove(dir);
  }

  /** Ask QEMU to quit through its QMP socket; false (leaving it to signals) when that failed. */
  private async quitByQmp(socket: string): Promise<boolean> {
    try {
      const stream = await this.host.connectUnix!(socket);
      const qmp = await QmpClient.start(stream, 3_000);
      await qmp.execute('quit', undefined, 3_000).catch(() => undefined); // the socket may close before the reply
      qmp.close();
      return true;
    } catch (err) {
      logger.debug({ socket, err: (err as Error).message }, 'QMP quit failed; signalling instead');
      return false;
    }
  }

  async list(filter: { platform?: string; fleet?: string }, ctx: DriverContext): Promise<OwnedNode[]> {
    const root = path.posix.join(await this.root(ctx.signal), 'nodes');
    const nodes: OwnedNode[] = [];
    for (const nodeId of (await this.host.readdir(root)).sort()) {
      const dir = path.posix.join(root, nodeId);
      const labels = await this.readJson<NodeLabels>(path.posix.join(dir, 'labels.json'));
      if (!labels) continue;
      if (filter.platform && labels.platform !== filter.platform) continue;
      if (filter.fleet && labels.fleet !== filter.fleet) continue;
      const stored = await this.readJson<StoredIdentity>(path.posix.join(dir, 'identity.json'));
      const identity = stored ? (({ nodeId: _n, imageDigest: _d, ...rest }) => rest)(stored) : undefined;
      nodes.push({ nodeId, labels, identity, running: (await this.runningPid(dir)) !== undefined });
    }
    return nodes;
  }

  async close(): Promise<void> {
    await this.host.close();
  }
}
