/**
 * The bare-metal target: nodes are physical machines of an inventory, driven through their BMCs
 * over Redfish (redfish.ts, machine.ts), booted from files this worker serves (boot-server.ts).
 *
 * - prepare: the verified artifact is kept once per digest under `<state>/images/` — the iso (and
 *   its unattended-installer repack, media.ts), or the pxe bundle's four files.
 * - create: a free machine is leased to the node (leases.ts: one lease per machine, atomic, shared
 *   by every worker of the inventory), its BMC is asked for its system (so a wrong credential or
 *   certificate fails here, clearly, before anything changed), the node's identity is written as
 *   its seed (a cidata ISO, or NoCloud documents for PXE; 0600), and its state file recorded with
 *   a random token: the job's files are served under `/j/<token>/` only while it is live.
 * - start: power off, eject, then virtual media: insert the installer, boot Cd, power on; PXE:
 *   boot Pxe, power on (after dnsmasq was told the machine when the target runs its own DHCP).
 * - readiness / address drive the rest from the BMC's power state, never a console: a
 *   virtual-media machine that powers off after having run (or a minute after power-on) has
 *   installed: the installer is ejected, the cidata ISO inserted, boot Hdd, power on. A node is up
 *   when its machine is on, its identity was taken (PXE: the seed was fetched) and its SSH port
 *   answers at its address; then the seed is ejected and deleted, the boot override cleared, and
 *   the job closed. Every step is recorded before and after, so a worker that dies anywhere
 *   resumes where it was: a start that was already sent is recognised (machine on, our media or
 *   boot target set) and never repeated, so a machine is installed once.
 * - destroy: power off, eject, optionally secure-erase, forget the job, give the machine back.
 * - list: the nodes of this target's state directory, their power from the BMC.
 *
 * State per node: `<state>/nodes/<nodeId>.json` (labels, public identity, machine, phase, token,
 * events) and `<state>/seeds/<nodeId>*` (private). Addresses: the inventory's; for PXE nodes
 * without one, the address the node fetched its seed from, or this target's DHCP lease.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { stateDir as kubedosStateDir } from '../../config/paths';
import {
  ArtifactRequiredError,
  BmcCredentialsMissingError,
  BmcUnreachableError,
  ConfigError,
  InventoryExhaustedError,
  NodeAddressUnknownError,
  NodeImageConflictError,
  ProvisioningFailedError,
  TargetNodeNotFoundError,
} from '../../errors';
import { logger } from '../../log';
import type { CreateNodeRequest, DriverContext, DriverEnvironment, ImageSource, NodeAddress, NodeLabels, OwnedNode, PreparedImage, TargetDriver } from '../driver';
import { reporting } from '../driver-support';
import { LocalHost } from '../host';
import { publicPart, type PublicIdentity } from '../identity';
import { renderNocloud } from '../nocloud';
import { serveBoot, type BootServerHandle, type Served } from './boot-server';
import { DhcpServer } from './dhcp';
import { baremetal, type BaremetalTargetSpec, type MachineSpec } from './index';
import { LeaseStore } from './leases';
import { BmcMachine } from './machine';
import { chainScript, nodeIpxeScript, writeInstallerIso, writeSeedIso } from './media';
import { RedfishClient, type BmcEndpoint } from './redfish';

/**
 * A machine that has been on and is off again has finished its install; one never seen on counts
 * as done after this long. Also how long a machine may still report Off after a power-on.
 */
const INSTALL_OFF_GRACE_MS = 60_000;
/** How long an SSH port probe waits. */
const PORT_PROBE_MS = 2_000;
/** File names of a virtual-media job under /j/<token>/. */
export const INSTALLER_FILE = 'installer.iso';
export const SEED_FILE = 'cidata.iso';
/** Epoch of repacked installer ISOs (their contents keep the image's own dates). */
const REPACK_EPOCH = 0;

export type Phase = 'created' | 'starting' | 'installing' | 'installed' | 'booting' | 'up';
const ORDER: readonly Phase[] = ['created', 'starting', 'installing', 'installed', 'booting', 'up'];

export interface NodeState {
  kubedos: 1;
  nodeId: string;
  labels: NodeLabels;
  identity: PublicIdentity;
  machine: string;
  mac: string;
  method: BaremetalTargetSpec['provisioning'];
  token: string;
  /** virtual media: the repacked installer; pxe: the bundle directory and its script's name. */
  image: { digest: string; installer?: string; bundle?: string; script?: string };
  phase: Phase;
  resetAt?: number;
  sawOn?: boolean;
  installedAt?: number;
  bootedAt?: number;
  upAt?: number;
  /** PXE: when the node fetched its NoCloud documents, and from where. */
  seedFetchedAt?: number;
  seedFrom?: string;
  /** What the machine was told, in order: for people, and for tests that count installs. */
  events: { at: string; event: string }[];
}

export interface BaremetalDriverOptions {
  /** Redfish client settings (timeouts, task polling). */
  redfish?: ConstructorParameters<typeof RedfishClient>[1];
  /** @default INSTALL_OFF_GRACE_MS */
  installOffGraceMs?: number;
  /** TFTP root for the target's own dnsmasq. @default Debian's /usr/lib/ipxe */
  tftpRoot?: string;
}

function checkNodeId(nodeId: string): void {
  if (!/^[a-z0-9][a-z0-9.-]{0,120}$/.test(nodeId) || nodeId.includes('..')) throw new TypeError(`invalid node id ${JSON.stringify(nodeId)}`);
}

function isAtLeast(phase: Phase, than: Phase): boolean {
  return ORDER.indexOf(phase) >= ORDER.indexOf(than);
}

function portOpen(host: string, port: number, timeoutMs = PORT_PROBE_MS): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** The password or user name a credentials reference names, read on this worker. */
function secret(machine: string, env: string | undefined, file: string | undefined): string {
  if (env !== undefined) {
    const value = process.env[env];
    if (!value) throw new BmcCredentialsMissingError(machine, `environment variable ${env}`);
    return value;
  }
  try {
    return readFileSync(file!, 'utf8').replace(/\r?\n$/, '');
  } catch {
    throw new BmcCredentialsMissingError(machine, `file ${file}`);
  }
}

export class BaremetalDriver implements TargetDriver {
  readonly type = 'baremetal' as const;
  private readonly leases: LeaseStore;
  private readonly machines = new Map<string, BmcMachine>();
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly building = new Map<string, Promise<void>>();
  private readonly host = new LocalHost();
  private server?: Promise<BootServerHandle>;
  private readonly dhcp?: DhcpServer;
  /** token → node id, refreshed from disk when a token is not known (another driver instance made it). */
  private tokens = new Map<string, string>();
  private tokensReadAt = 0;

  constructor(
    readonly name: string,
    private readonly spec: BaremetalTargetSpec,
    private readonly env: DriverEnvironment,
    private readonly options: BaremetalDriverOptions = {},
  ) {
    this.leases = new LeaseStore(spec.leaseDir ?? path.join(kubedosStateDir(), 'baremetal', 'leases'));
    if (spec.dhcp) this.dhcp = new DhcpServer(env.stateDir, spec.dhcp, `${this.baseUrl}/ipxe`, options.tftpRoot);
    for (const m of spec.machines) {
      if ((m.tls ?? spec.tls)?.insecure) logger.warn({ target: name, machine: m.name, bmc: m.bmc }, 'BMC TLS verification is OFF for this machine (tls.insecure)');
    }
  }

  private get baseUrl(): string {
    return this.spec.bootServer.url.replace(/\/+$/, '');
  }

  private dir(...parts: string[]): string {
    return path.join(this.env.stateDir, ...parts);
  }

  private stateFile(nodeId: string): string {
    return this.dir('nodes', `${nodeId}.json`);
  }

  // --- state -------------------------------------------------------------------------------

  private async readState(nodeId: string): Promise<NodeState | undefined> {
    checkNodeId(nodeId);
    try {
      const state = JSON.parse(await fs.readFile(this.stateFile(nodeId), 'utf8')) as NodeState;
      return state.kubedos === 1 ? state : undefined;
    } catch {
      return undefined;
    }
  }

  private async writeState(state: NodeState): Promise<void> {
    await fs.mkdir(this.dir('nodes'), { recursive: true, mode: 0o700 });
    const file = this.stateFile(state.nodeId);
    const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    await fs.writeFile(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
    await fs.rename(tmp, file);
    this.tokens.set(state.token, state.nodeId);
  }

  private async record(state: NodeState, event: string, change: Partial<NodeState> = {}): Promise<void> {
    Object.assign(state, change);
    state.events.push({ at: new Date().toISOString(), event });
    await this.writeState(state);
    logger.info({ target: this.name, nodeId: state.nodeId, machine: state.machine, phase: state.phase }, `baremetal: ${event}`);
  }

  /** One operation at a time per node in this process (the boot server and activities share state). */
  private withNode<T>(nodeId: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(nodeId) ?? Promise.resolve();
    const next = previous.then(fn, fn);
    const settled = next.catch(() => undefined);
    this.locks.set(nodeId, settled);
    void settled.then(() => {
      if (this.locks.get(nodeId) === settled) this.locks.delete(nodeId);
    });
    return next;
  }

  private async allStates(): Promise<NodeState[]> {
    const names = await fs.readdir(this.dir('nodes')).catch(() => [] as string[]);
    const states = await Promise.all(names.filter((n) => n.endsWith('.json')).map((n) => this.readState(n.slice(0, -5)).catch(() => undefined)));
    return states.filter((s): s is NodeState => s !== undefined);
  }

  // --- machines ----------------------------------------------------------------------------

  private machineSpec(name: string): MachineSpec | undefined {
    return this.spec.machines.find((m) => m.name === name);
  }

  private endpoint(m: MachineSpec): BmcEndpoint {
    const creds = m.credentials ?? this.spec.credentials!;
    const trust = m.tls ?? this.spec.tls!;
    return {
      machine: m.name,
      url: m.bmc.replace(/\/+$/, ''),
      tls: { fingerprint: trust.fingerprint, ca: trust.ca, insecure: trust.insecure },
      username: creds.username ?? secret(m.name, creds.usernameEnv, undefined),
      password: secret(m.name, creds.passwordEnv, creds.passwordFile),
    };
  }

  private bmc(m: MachineSpec): BmcMachine {
    let machine = this.machines.get(m.name);
    if (!machine) {
      machine = new BmcMachine(m.name, new RedfishClient(this.endpoint(m), this.options.redfish), m.system);
      this.machines.set(m.name, machine);
    }
    return machine;
  }

  private bmcOf(state: NodeState): BmcMachine {
    const m = this.machineSpec(state.machine);
    if (!m) throw new ProvisioningFailedError(state.machine, state.nodeId, `the machine is no longer in target ${this.name}'s inventory, so its BMC cannot be reached`);
    return this.bmc(m);
  }

  /** The machine this node holds already (a retried create), else the first free one that answers. */
  private async claim(request: CreateNodeRequest, ctx: DriverContext): Promise<{ machine: MachineSpec; bmc: BmcMachine }> {
    const held = (await this.leases.list()).find((l) => l.nodeId === request.nodeId && l.target === this.name);
    const candidates = held ? this.spec.machines.filter((m) => m.mac === held.mac) : this.spec.machines;
    const holders: string[] = [];
    let unreachable: BmcUnreachableError | undefined;
    for (const m of candidates) {
      const result = await this.leases.claim({ mac: m.mac, machine: m.name, bmc: m.bmc, target: this.name, nodeId: request.nodeId, labels: request.labels });
      if (!result.claimed) {
        holders.push(`${m.name}: ${result.holder ? `${result.holder.target}/${result.holder.nodeId}` : 'unreadable lease'}`);
        continue;
      }
      try {
        const bmc = this.bmc(m);
        // The BMC answers with these credentials and this certificate: refused here, nothing has changed yet.
        await bmc.resource(ctx);
        return { machine: m, bmc };
      } catch (err) {
        await this.leases.release(m.mac, request.nodeId);
        if (!(err instanceof BmcUnreachableError)) throw err;
        logger.warn({ target: this.name, machine: m.name, err: err.message }, 'machine unreachable; trying the next one');
        unreachable = err;
      }
    }
    if (unreachable) throw unreachable;
    throw new InventoryExhaustedError(this.name, this.spec.machines.length, holders);
  }

  // --- the boot server ---------------------------------------------------------------------

  private serving(): Promise<BootServerHandle> {
    if (!this.server) {
      const url = new URL(this.baseUrl);
      const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
      const tls = this.spec.bootServer.tls;
      this.server = Promise.resolve()
        .then(() => {
          if (!tls) return undefined;
          try {
            return { cert: readFileSync(tls.cert), key: readFileSync(tls.key) };
          } catch (err) {
            throw new ConfigError(`target ${this.name}: cannot read the boot server's certificate or key: ${(err as Error).message}`, 'bootServer.tls names files on the kvm worker');
          }
        })
        .then((pem) => serveBoot(this.spec.bootServer.listen, port, { file: (t, n, r) => this.serve(t, n, r), chain: (mac) => this.chain(mac) }, pem));
      this.server.catch(() => (this.server = undefined));
    }
    return this.server;
  }

  private async byToken(token: string): Promise<NodeState | undefined> {
    let nodeId = this.tokens.get(token);
    if (!nodeId && Date.now() - this.tokensReadAt > 1_000) {
      this.tokensReadAt = Date.now();
      this.tokens = new Map((await this.allStates()).map((s) => [s.token, s.nodeId]));
      nodeId = this.tokens.get(token);
    }
    if (!nodeId) return undefined;
    const state = await this.readState(nodeId);
    return state?.token === token ? state : undefined;
  }

  private seedPath(nodeId: string, name: string): string {
    return this.dir('seeds', `${nodeId}.${name}`);
  }

  /** What a live job may fetch (see boot-server.ts); undefined is a 404. */
  private async serve(token: string, name: string, remote: string): Promise<Served | undefined> {
    const state = await this.byToken(token);
    if (!state || state.phase === 'up') return undefined;
    const file = async (p: string, type = 'application/octet-stream'): Promise<Served | undefined> => {
      const st = await fs.stat(p).catch(() => undefined);
      return st?.isFile() ? { kind: 'file', path: p, size: st.size, type } : undefined;
    };
    if (state.method === 'virtual-media') {
      if (name === INSTALLER_FILE && isAtLeast(state.phase, 'starting') && !isAtLeast(state.phase, 'installed')) return file(state.image.installer!);
      if (name === SEED_FILE && isAtLeast(state.phase, 'installing')) return file(this.seedPath(state.nodeId, 'cidata.iso'));
      return undefined;
    }
    if (!isAtLeast(state.phase, 'starting')) return undefined;
    if (name === 'seed/meta-data' || name === 'seed/user-data') {
      // The first machine to fetch the seed is the node; nobody else gets it afterwards.
      if (state.seedFrom && state.seedFrom !== remote) {
        logger.warn({ target: this.name, nodeId: state.nodeId, remote, node: state.seedFrom }, 'refused a seed request from another address');
        return undefined;
      }
      const served = await file(this.seedPath(state.nodeId, name.slice('seed/'.length)), 'text/plain');
      if (served && name === 'seed/user-data') {
        await this.withNode(state.nodeId, async () => {
          const now = await this.readState(state.nodeId);
          if (now && now.token === token && !now.seedFetchedAt) await this.record(now, `seed fetched from ${remote}`, { seedFetchedAt: Date.now(), seedFrom: remote });
        });
      } else if (served && !state.seedFrom) {
        await this.withNode(state.nodeId, async () => {
          const now = await this.readState(state.nodeId);
          if (now && now.token === token && !now.seedFrom) await this.record(now, `meta-data fetched from ${remote}`, { seedFrom: remote });
        });
      }
      return served;
    }
    if (name === state.image.script) {
      const script = await fs.readFile(path.join(state.image.bundle!, name), 'utf8');
      return { kind: 'text', body: nodeIpxeScript(script, `${this.baseUrl}/j/${token}/seed/`), type: 'text/plain' };
    }
    if (/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name) && name !== state.image.script) return file(path.join(state.image.bundle!, name));
    return undefined;
  }

  /** The iPXE chain of the live PXE job of a machine, by its MAC. */
  private async chain(mac: string): Promise<string | undefined> {
    const state = (await this.allStates()).find((s) => s.mac === mac && s.method === 'pxe' && isAtLeast(s.phase, 'starting') && s.phase !== 'up');
    return state ? chainScript(`/j/${state.token}/${state.image.script}`) : undefined;
  }

  // --- TargetDriver --------------------------------------------------------------------------

  async prepare(image: ImageSource, ctx: DriverContext): Promise<PreparedImage> {
    const artifact = image.artifact;
    const want = this.spec.provisioning === 'pxe' ? 'pxe' : 'iso';
    if (!artifact) throw new ArtifactRequiredError(this.name, 'baremetal', baremetal.deploys!(this.spec as unknown as Record<string, unknown>));
    if (artifact.format !== want) throw new ArtifactRequiredError(this.name, 'baremetal', [want], artifact.format);
    if (!/^[0-9a-f]{64}$/.test(artifact.sha256)) throw new TypeError(`invalid artifact sha256 ${JSON.stringify(artifact.sha256)}`);
    await fs.mkdir(this.dir('images'), { recursive: true, mode: 0o755 });
    ctx.progress?.({ step: `prepare ${image.name}` });
    if (want === 'iso') {
      const location = this.dir('images', `${artifact.sha256}.iso`);
      await this.host.putFile(artifact, location, 0o444, ctx);
      return { digest: image.digest, location };
    }
    const files = artifact.files ?? [];
    if (files.length < 2) {
      throw new ArtifactRequiredError(this.name, 'baremetal', ['pxe'], `${artifact.format} without its kernel, initrd and root (only ${files.length || 1} file fetched)`);
    }
    const bundle = this.dir('images', `${artifact.sha256}.pxe`);
    await fs.mkdir(bundle, { recursive: true, mode: 0o755 });
    for (const f of files) {
      if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(f.file)) throw new TypeError(`invalid bundle file name ${JSON.stringify(f.file)}`);
      await this.host.putFile(f, path.join(bundle, f.file), 0o444, ctx);
    }
    await fs.writeFile(path.join(bundle, '.script'), files[0]!.file);
    return { digest: image.digest, location: bundle };
  }

  /** The unattended installer for a disk, repacked once per (ISO, disk). */
  private async installer(iso: string, disk: string | undefined, ctx: DriverContext): Promise<string> {
    const key = disk ? Buffer.from(disk).toString('hex').slice(0, 48) : 'first-disk';
    const out = iso.replace(/\.iso$/, `.install-${key}.iso`);
    if (await fs.stat(out).then((s) => s.isFile(), () => false)) return out;
    let pending = this.building.get(out);
    if (!pending) {
      pending = reporting(ctx, `repack ${path.basename(iso)} as the unattended installer`, () => writeInstallerIso(iso, out, disk, REPACK_EPOCH, ctx)).finally(() => this.building.delete(out));
      this.building.set(out, pending);
    }
    await pending;
    return out;
  }

  create(request: CreateNodeRequest, ctx: DriverContext): Promise<PublicIdentity> {
    checkNodeId(request.nodeId);
    return this.withNode(request.nodeId, () => reporting(ctx, `create ${request.nodeId}`, () => this.createNode(request, ctx)));
  }

  private async createNode(request: CreateNodeRequest, ctx: DriverContext): Promise<PublicIdentity> {
    const { nodeId, labels, identity } = request;
    const existing = await this.readState(nodeId);
    if (existing) {
      if (existing.labels.imageDigest !== labels.imageDigest) throw new NodeImageConflictError(`${this.name} (machine ${existing.machine})`, nodeId, existing.labels.imageDigest);
      return existing.identity;
    }
    const method = this.spec.provisioning;
    const location = request.image.location;
    if (!location.startsWith(`${this.dir('images')}${path.sep}`)) throw new TypeError(`image location ${JSON.stringify(location)} is not a prepared image of ${this.name}`);
    const { machine } = await this.claim(request, ctx);
    await fs.mkdir(this.dir('seeds'), { recursive: true, mode: 0o700 });
    try {
      const image: NodeState['image'] = { digest: request.image.digest };
      const seed = { instanceId: nodeId, identity, authorizedKeys: request.authorizedKeys };
      if (method === 'virtual-media') {
        image.installer = await this.installer(location, machine.disk, ctx);
        await writeSeedIso(seed, this.seedPath(nodeId, 'cidata.iso'), ctx);
      } else {
        image.bundle = location;
        image.script = (await fs.readFile(path.join(location, '.script'), 'utf8')).trim();
        for (const [name, content] of Object.entries(renderNocloud(seed))) await fs.writeFile(this.seedPath(nodeId, name), content, { mode: 0o600 });
      }
      const state: NodeState = {
        kubedos: 1,
        nodeId,
        labels,
        identity: publicPart(identity),
        machine: machine.name,
        mac: machine.mac,
        method,
        token: randomBytes(24).toString('base64url'),
        image,
        phase: 'created',
        events: [],
      };
      await this.record(state, `machine ${machine.name} leased`);
      return state.identity;
    } catch (err) {
      await this.removeSeeds(nodeId);
      await this.leases.release(machine.mac, nodeId);
      throw err;
    }
  }

  private async removeSeeds(nodeId: string): Promise<void> {
    for (const name of ['cidata.iso', 'meta-data', 'user-data']) await fs.rm(this.seedPath(nodeId, name), { force: true });
  }

  private url(state: NodeState, file: string): string {
    return `${this.baseUrl}/j/${state.token}/${file}`;
  }

  start(nodeId: string, ctx: DriverContext): Promise<void> {
    checkNodeId(nodeId);
    return this.withNode(nodeId, () => reporting(ctx, `start ${nodeId}`, () => this.startNode(nodeId, ctx)));
  }

  private async startNode(nodeId: string, ctx: DriverContext): Promise<void> {
    const state = await this.readState(nodeId);
    if (!state) throw new TargetNodeNotFoundError(this.name, nodeId, 'start');
    if (isAtLeast(state.phase, 'installing')) return; // started already: never twice
    await this.serving();
    const bmc = this.bmcOf(state);
    const vmedia = state.method === 'virtual-media';
    if (state.phase === 'starting') {
      // An attempt that died after telling the BMC: if the machine runs what we gave it, that was it.
      const running = (await bmc.power(ctx)) === 'On';
      const ours = vmedia ? (await bmc.media(ctx)).image === this.url(state, INSTALLER_FILE) : (await bmc.bootOverride(ctx)).target === 'Pxe';
      if (running && ours) {
        await this.record(state, 'found running after an interrupted start', { phase: vmedia ? 'installing' : 'booting', resetAt: state.resetAt ?? Date.now(), sawOn: true });
        return;
      }
    } else {
      await this.record(state, 'starting', { phase: 'starting' });
    }
    await bmc.powerOff(ctx);
    await bmc.eject(ctx).catch((err: unknown) => {
      if (vmedia) throw err;
      logger.debug({ machine: state.machine, err: (err as Error).message }, 'no virtual CD to eject');
    });
    if (vmedia) {
      await bmc.insert(this.url(state, INSTALLER_FILE), ctx);
      await bmc.bootFrom('Cd', ctx);
    } else {
      if (this.dhcp) await this.dhcp.serve(await this.dhcpHosts());
      await bmc.bootFrom('Pxe', ctx);
    }
    await this.record(state, vmedia ? 'installer inserted, boot Cd, power on' : 'boot Pxe, power on', { resetAt: Date.now() });
    await bmc.reset('On', ctx);
    await this.record(state, 'powered on', { phase: vmedia ? 'installing' : 'booting' });
  }

  /** The machines this target's DHCP answers: those a node of it holds. */
  private async dhcpHosts(): Promise<{ mac: string; address?: string }[]> {
    const held = new Set((await this.leases.list()).filter((l) => l.target === this.name).map((l) => l.mac));
    return this.spec.machines.filter((m) => held.has(m.mac)).map((m) => ({ mac: m.mac, address: m.address }));
  }

  /** Move the node on from what its machine does now (see the file comment). */
  private async advance(state: NodeState, ctx: DriverContext): Promise<NodeState> {
    if (!isAtLeast(state.phase, 'installing')) return state;
    await this.serving();
    const bmc = this.bmcOf(state);
    const power = await bmc.power(ctx);
    if (state.phase === 'installing') {
      if (power === 'On') {
        if (!state.sawOn) await this.record(state, 'installer running', { sawOn: true });
        return state;
      }
      if (power !== 'Off') return state;
      const grace = this.options.installOffGraceMs ?? INSTALL_OFF_GRACE_MS;
      if (!state.sawOn && Date.now() - (state.resetAt ?? 0) < grace) return state;
      await this.record(state, 'installer done (powered off)', { phase: 'installed', installedAt: Date.now() });
    }
    if (state.phase === 'installed') {
      const seedUrl = this.url(state, SEED_FILE);
      if (power === 'On' && (await bmc.media(ctx)).image === seedUrl) {
        await this.record(state, 'found booting after an interrupted switch to disk', { phase: 'booting', bootedAt: Date.now() });
        return state;
      }
      await bmc.powerOff(ctx);
      await bmc.eject(ctx);
      await bmc.insert(seedUrl, ctx);
      await bmc.bootFrom('Hdd', ctx);
      await bmc.reset('On', ctx);
      await this.record(state, 'installer ejected, cidata inserted, boot Hdd, power on', { phase: 'booting', bootedAt: Date.now() });
      return state;
    }
    if (power === 'Off') {
      // Some BMCs report Off for a while after a power-on was accepted.
      const since = state.phase === 'booting' ? (state.bootedAt ?? state.resetAt ?? 0) : 0;
      if (Date.now() - since < (this.options.installOffGraceMs ?? INSTALL_OFF_GRACE_MS)) return state;
      throw new ProvisioningFailedError(state.machine, state.nodeId, `the machine powered off while its node should run (${state.phase})`);
    }
    if (power !== 'On' || state.phase !== 'booting') return state;
    if (state.method === 'pxe' && !state.seedFetchedAt) return state;
    const host = await this.addressOf(state);
    if (!host || !(await portOpen(host, 22))) return state;
    // Up: the identity was taken (sshd starts after first boot applied it).
    if (state.method === 'virtual-media') await bmc.eject(ctx);
    const left = await bmc.clearBootOverride(ctx);
    await this.removeSeeds(state.nodeId);
    await this.record(state, `up at ${host}; seed removed, boot override ${left === 'disabled' ? 'cleared' : 'set to disk'}`, { phase: 'up', upAt: Date.now() });
    return state;
  }

  private async addressOf(state: NodeState): Promise<string | undefined> {
    const listed = this.machineSpec(state.machine)?.address;
    if (listed) return listed;
    if (state.seedFrom) return state.seedFrom;
    return (await this.dhcp?.leases())?.get(state.mac);
  }

  private async advanced(nodeId: string, action: string, ctx: DriverContext): Promise<NodeState> {
    const state = await this.readState(nodeId);
    if (!state) throw new TargetNodeNotFoundError(this.name, nodeId, action);
    return this.advance(state, ctx);
  }

  address(nodeId: string, ctx: DriverContext): Promise<NodeAddress> {
    checkNodeId(nodeId);
    return this.withNode(nodeId, async () => {
      const state = await this.advanced(nodeId, 'locate', ctx);
      if (!isAtLeast(state.phase, 'booting')) throw new NodeAddressUnknownError(this.name, nodeId, `machine ${state.machine} is ${state.phase === 'installing' ? 'installing the image' : 'not started yet'}`, 'wait: the address is known once the installed system boots');
      const host = await this.addressOf(state);
      if (!host) throw new NodeAddressUnknownError(this.name, nodeId, `machine ${state.machine} has no inventory address and has not fetched its seed yet`, 'wait, or give the machine an address in the inventory');
      return { host, ports: { 22: 22 } };
    });
  }

  /** Machine on, identity taken, SSH port open at its address (no console: real iron has none). */
  readiness(nodeId: string, ctx: DriverContext): Promise<boolean> {
    checkNodeId(nodeId);
    return this.withNode(nodeId, async () => (await this.advanced(nodeId, 'check', ctx)).phase === 'up');
  }

  destroy(nodeId: string, ctx: DriverContext): Promise<void> {
    checkNodeId(nodeId);
    return this.withNode(nodeId, () => reporting(ctx, `destroy ${nodeId}`, () => this.destroyNode(nodeId, ctx)));
  }

  private async destroyNode(nodeId: string, ctx: DriverContext): Promise<void> {
    const state = await this.readState(nodeId);
    const lease = (await this.leases.list()).find((l) => l.nodeId === nodeId && l.target === this.name);
    const mac = state?.mac ?? lease?.mac;
    const m = mac ? this.spec.machines.find((x) => x.mac === mac) : undefined;
    // A machine is touched only when this node did something to it (a create that died before
    // its state was written leased the machine, nothing more).
    if (m && state && state.phase !== 'created') {
      const bmc = this.bmc(m);
      await bmc.powerOff(ctx);
      await bmc.eject(ctx).catch((err: unknown) => {
        if (state?.method === 'virtual-media') throw err;
      });
      if (this.spec.wipe === 'secure-erase') {
        const erased = await bmc.secureErase(ctx);
        logger.info({ target: this.name, nodeId, machine: m.name, drives: erased }, 'baremetal: drives secure-erased');
      }
    } else if (mac && !m) {
      logger.warn({ target: this.name, nodeId, mac }, 'the machine of this node is no longer in the inventory: its lease is released without touching it');
    }
    await this.removeSeeds(nodeId);
    await fs.rm(this.stateFile(nodeId), { force: true });
    if (state) this.tokens.delete(state.token);
    if (mac) await this.leases.release(mac, nodeId);
    if (this.dhcp && state?.method === 'pxe') {
      const hosts = await this.dhcpHosts();
      if (hosts.length) await this.dhcp.serve(hosts);
      else await this.dhcp.stop();
    }
    if (state || lease) logger.info({ target: this.name, nodeId, machine: m?.name ?? mac }, 'baremetal: machine returned to the inventory');
  }

  async list(filter: { platform?: string; fleet?: string }, ctx: DriverContext): Promise<OwnedNode[]> {
    const states = (await this.allStates()).filter((s) => (!filter.platform || s.labels.platform === filter.platform) && (!filter.fleet || s.labels.fleet === filter.fleet));
    const nodes: OwnedNode[] = [];
    for (const s of states.sort((a, b) => a.nodeId.localeCompare(b.nodeId))) {
      let running = isAtLeast(s.phase, 'starting');
      try {
        if (running) running = (await this.bmcOf(s).power(ctx)) === 'On';
      } catch (err) {
        logger.debug({ nodeId: s.nodeId, err: (err as Error).message }, 'power state unknown');
      }
      nodes.push({ nodeId: s.nodeId, labels: s.labels, identity: s.identity, running });
    }
    return nodes;
  }

  /** A node's recorded state (for status and tests). */
  async nodeState(nodeId: string): Promise<NodeState | undefined> {
    return this.readState(nodeId);
  }

  async close(): Promise<void> {
    for (const m of this.machines.values()) await m.client.close();
    this.machines.clear();
    const server = this.server;
    this.server = undefined;
    if (server) await server.then((s) => s.release(), () => undefined);
  }
}
