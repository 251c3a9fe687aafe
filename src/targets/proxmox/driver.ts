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
 */
import path from 'node:path';
import { ArtifactRequiredError, ConfigError, GuestAgentUnavailableError, NodeImageConflictError, KubedosError, NodeNotRunningError, NotOwnedVmError, TargetNodeNotFoundError, VmidRangeExhaustedError } from '../../errors';
import { logger } from '../../log';
import { proxmox, type ProxmoxTargetSpec } from './index';
import type { CreateNodeRequest, DriverContext, DriverEnvironment, ImageSource, NodeAddress, NodeLabels, OwnedNode, PreparedImage, TargetDriver } from '../driver';
import { commandStderr, SshHost, type TargetHost } from '../host';
import { consoleReady, machineIdUuid, publicPart, type PublicIdentity } from '../identity';
import { renderNocloud } from '../nocloud';

const MiB = 1024 * 1024;

/** Where qemu-server creates a VM's serial sockets (`serial0: socket`). */
export const QEMU_SERVER_RUN_DIR = '/var/run/qemu-server';
/** Where prepared images are uploaded on the Proxmox host. */
export const DEFAULT_IMAGE_DIR = '/var/lib/vz/template/kubedos';
/** The tag every KubeDos VM carries (the description record is the proof; the tag is for people and filters). */
export const KUBEDOS_TAG = 'kubedos';

const TIMEOUT = { quick: 60_000, start: 300_000, create: 30 * 60_000 } as const;
/** How long the console reader waits for QEMU to create the serial socket. */
const SERIAL_WAIT_SECONDS = 300;
/** Heartbeat period during long remote commands (the create activity's heartbeat timeout is 20 s). */
const HEARTBEAT_MS = 5_000;

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

/** What the description of a KubeDos VM records: the proof of ownership, and the node's public identity. */
export interface VmRecord {
  kubedos: 1;
  nodeId: string;
  labels: NodeLabels;
  identity: PublicIdentity;
}

/** One line of `qm list`. */
export interface QmListEntry {
  vmid: number;
  name: string;
  status: string;
}

/** A VM of ours, as found on the host. */
interface OwnedVm {
  vmid: number;
  /** From `qm list`: running, stopped, paused, … */
  status: string;
  record: VmRecord;
  config: Record<string, string>;
}

// ---------------------------------------------------------------------------------------------
// argv builders and output parsers (pure)

export interface QmCreateOptions {
  vmid: number;
  name: string;
  memoryMiB: number;
  cores: number;
  /** Storage for the disks and the cloud-init drive. */
  storage: string;
  bridge: string;
  /** Absolute path of the prepared image on the host. */
  image: string;
  tags: string;
  description: string;
  /** SMBIOS UUID (the machine-id). */
  uuid: string;
  /** Volume ids of the NoCloud snippets. */
  cloudInit: { user: string; meta: string };
}

/** The one `qm create` of a node (see the file comment for what each option is for). */
export function qmCreateArgv(o: QmCreateOptions): string[] {
  return [
    'qm', 'create', String(o.vmid),
    '--name', o.name,
    '--tags', o.tags,
    '--description', o.description,
    '--ostype', 'l26',
    '--machine', 'q35',
    '--bios', 'ovmf',
    // The size of an EFI vars disk is ignored (the 4 MiB OVMF template is copied); no Secure Boot keys.
    '--efidisk0', `${o.storage}:1,efitype=4m,pre-enrolled-keys=0`,
    '--cores', String(o.cores),
    '--memory', String(o.memoryMiB),
    '--scsihw', 'virtio-scsi-pci',
    '--scsi0', `${o.storage}:0,import-from=${o.image}`,
    '--boot', 'order=scsi0',
    '--net0', `virtio,bridge=${o.bridge}`,
    '--serial0', 'socket',
    '--vga', 'serial0',
    '--agent', 'enabled=1',
    '--smbios1', `uuid=${o.uuid}`,
    '--ide2', `${o.storage}:cloudinit`,
    '--citype', 'nocloud',
    '--cicustom', `user=${o.cloudInit.user},meta=${o.cloudInit.meta}`,
    '--ipconfig0', 'ip=dhcp',
  ];
}

export function qmDestroyArgv(vmid: number, skiplock: boolean): string[] {
  return ['qm', 'destroy', String(vmid), '--purge', '1', '--destroy-unreferenced-disks', '1', ...(skiplock ? ['--skiplock', '1'] : [])];
}

export function qmStopArgv(vmid: number, skiplock: boolean): string[] {
  return ['qm', 'stop', String(vmid), ...(skiplock ? ['--skiplock', '1'] : [])];
}

/**
 * `qm list`: `%10s %-20s %-10s %-10s %12.2f %-10s` of VMID NAME STATUS MEM(MB) BOOTDISK(GB) PID.
 * The name may be empty or hold spaces (`VM 123`), so it is what lies between the id and the
 * last four columns.
 */
export function parseQmList(text: string): QmListEntry[] {
  const entries: QmListEntry[] = [];
  for (const line of text.split('\n')) {
    const words = line.trim().split(/\s+/);
    if (words.length < 5 || !/^\d+$/.test(words[0]!)) continue; // header, blank
    entries.push({ vmid: Number(words[0]), name: words.slice(1, -4).join(' '), status: words[words.length - 4]! });
  }
  return entries;
}

/** `qm config`: `key: value` lines (the description percent-encoded, see decodeDescription). */
export function parseQmConfig(text: string): Record<string, string> {
  const config: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([a-z][a-z0-9_-]*): ?(.*)$/.exec(line);
    if (m) config[m[1]!] = m[2]!;
  }
  return config;
}

/** `pvesm status`: Name Type Status Total Used Available %. */
export function parsePvesmStatus(text: string): Array<{ name: string; type: string; active: boolean }> {
  return text
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((w) => w.length >= 3 && w[0] !== '')
    .map((w) => ({ name: w[0]!, type: w[1]!, active: w[2] === 'active' }));
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

export function vmTags(labels: NodeLabels): string {
  return [KUBEDOS_TAG, `platform-${proxmoxTag(labels.platform)}`, `fleet-${proxmoxTag(labels.fleet)}`, `gen-${labels.generation}`].join(';');
}

/** The guest's first global IPv4 from `qm guest cmd <vmid> network-get-interfaces`. */
export function guestIpv4(output: string): string | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(output);
  } catch {
    return undefined;
  }
  const list = Array.isArray(parsed) ? parsed : (parsed as { result?: unknown })?.result;
  if (!Array.isArray(list)) return undefined;
  for (const iface of list as Array<{ name?: string; 'ip-addresses'?: Array<{ 'ip-address'?: string; 'ip-address-type'?: string }> }>) {
    if (iface.name === 'lo') continue;
    for (const a of iface['ip-addresses'] ?? []) {
      const ip = a['ip-address'];
      if (a['ip-address-type'] === 'ipv4' && ip && !/^(127\.|169\.254\.)/.test(ip)) return ip;
    }
  }
  return undefined;
}

/** `qm create` refused the id because it is taken (here, by a racing create, or on another node). */
export function vmidTaken(stderr: string): boolean {
  return /\b(VM|CT) \d+ already exists|config file already exists/.test(stderr);
}

/**
 * The console reader started before `qm start` (argv: socket log pidfile hostname wait-seconds).
 * It forks: the parent writes the child's pid to the pid file, prints it and exits; the child
 * leaves the SSH session (setsid, stdio on /dev/null), connects as soon as QEMU creates the
 * socket, appends everything to the log and exits after the readiness line (or when QEMU
 * closes the socket; or at once when the log already has the line). Constant text: the values
 * are arguments, never spliced in.
 */
export const CONSOLE_READER = String.raw`use strict; use warnings; use IO::Socket::UNIX; use POSIX ();
my ($socket, $log, $pidfile, $want, $wait) = @ARGV;
my $pid = fork(); die "fork: $!\n" unless defined $pid;
if ($pid) {
  open(my $p, '>', "$pidfile.tmp") or die "$pidfile.tmp: $!\n"; print $p "$pid\n"; close($p);
  rename("$pidfile.tmp", $pidfile) or die "$pidfile: $!\n"; print "$pid\n"; exit 0;
}
POSIX::setsid();
open(STDIN, '<', '/dev/null'); open(STDOUT, '>', '/dev/null'); open(STDERR, '>', '/dev/null');
my $ready = qr/kubedos: ready \Q$want\E[\r\n]/;
if (open(my $in, '<', $log)) { local $/; my $seen = <$in>; close($in); if (defined($seen) && $seen =~ $ready) { unlink($pidfile); exit 0; } }
my $deadline = time() + $wait; my $s;
until ($s = IO::Socket::UNIX->new(Peer => $socket)) { exit 3 if time() > $deadline; select(undef, undef, undef, 0.05); }
open(my $out, '>>', $log) or exit 4; $out->autoflush(1);
my $tail = '';
while (1) {
  my $n = sysread($s, my $buf, 4096); last if !$n;
  print $out $buf; $tail = substr($tail . $buf, -8192);
  last if $tail =~ $ready;
}
close($s); close($out); unlink($pidfile); exit 0;
`;

// ---------------------------------------------------------------------------------------------

/** Node ids name VMs (`--name` is a DNS name on Proxmox) and files: keep them to that alphabet. */
function checkNodeId(nodeId: string): void {
  if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/.test(nodeId) || nodeId.length > 120) {
    throw new TypeError(`invalid node id ${JSON.stringify(nodeId)} (a Proxmox VM name is a DNS name)`);
  }
}

/** Repeat `ctx.progress` while `work` runs, so activities keep heartbeating through long commands. */
async function withProgress<T>(ctx: DriverContext, step: string, work: Promise<T>): Promise<T> {
  ctx.progress?.({ step });
  const timer = setInterval(() => ctx.progress?.({ step }), HEARTBEAT_MS);
  try {
    return await work;
  } finally {
    clearInterval(timer);
  }
}

/** At most `limit` of `fn` at once, results in order. */
async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
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
  /** VM ids a create of this driver is trying right now. */
  private readonly reserved = new Set<number>();
  /** VM ids `qm create` refused as existing although `qm list` did not show them: used on other cluster nodes. */
  private readonly usedElsewhere = new Set<number>();
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
  }

  private get range(): readonly [number, number] {
    return this.spec.vmidRange;
  }

  private inRange(vmid: number): boolean {
    return Number.isInteger(vmid) && vmid >= this.range[0] && vmid <= this.range[1];
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
        this.run(['pvesm', 'status', '--content', 'images'], ctx).then((r) => r.stdout),
        this.run(['pvesm', 'status', '--content', 'snippets'], ctx).then((r) => r.stdout),
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
    const probe = (await this.run(['pvesm', 'path', `${snippetStorage}:snippets/kubedos-probe.yaml`], ctx)).stdout.trim();
    if (!probe.startsWith('/')) throw new KubedosError(`${where}: pvesm path gave ${JSON.stringify(probe)} for a snippet, not a file path`);
    const snippetDir = path.posix.dirname(probe);
    await this.host.mkdir(snippetDir, 0o755);
    logger.debug({ target: this.name, node, snippetStorage, snippetDir }, 'proxmox host checked');
    return { snippetStorage, snippetDir };
  }

  private async qmList(ctx: DriverContext): Promise<QmListEntry[]> {
    return parseQmList((await this.run(['qm', 'list'], ctx)).stdout);
  }

  private async qmConfig(vmid: number, ctx: DriverContext): Promise<Record<string, string> | undefined> {
    try {
      return parseQmConfig((await this.run(['qm', 'config', String(vmid)], ctx)).stdout);
    } catch (err) {
      // Destroyed between `qm list` and now.
      if (/does not exist/.test(commandStderr(err) ?? '')) return undefined;
      throw err;
    }
  }

  private async qmStatus(vmid: number, ctx: DriverContext): Promise<string | undefined> {
    try {
      return /status:\s*(\S+)/.exec((await this.run(['qm', 'status', String(vmid)], ctx)).stdout)?.[1];
    } catch (err) {
      if (/does not exist/.test(commandStderr(err) ?? '')) return undefined;
      throw err;
    }
  }

  /** The record of a VM when, and only when, it is ours (see the file comment). */
  private ownedRecord(vmid: number, config: Record<string, string> | undefined): VmRecord | undefined {
    if (!config || !this.inRange(vmid) || !tagsOf(config.tags).includes(KUBEDOS_TAG)) return undefined;
    return decodeDescription(config.description);
  }

  /** Our VMs for a node id (normally one; two only after a create was lost mid-flight and retried). */
  private async findOwned(nodeId: string, ctx: DriverContext, options: { scanAll?: boolean; listed?: QmListEntry[] } = {}): Promise<OwnedVm[]> {
    const listed = options.listed ?? (await this.qmList(ctx));
    const candidates = listed.filter((v) => this.inRange(v.vmid) && (options.scanAll || v.name === nodeId));
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
    checkNodeId(nodeId);
    const cached = this.known.get(nodeId);
    if (cached) return cached;
    const [vm] = await this.findOwned(nodeId, ctx);
    if (!vm) throw new TargetNodeNotFoundError(this.name, nodeId, action);
    return { vmid: vm.vmid, hostname: vm.record.identity.hostname };
  }

  private consoleLog(nodeId: string): string {
    return path.posix.join(this.stateDir, 'console', `${nodeId}.log`);
  }

  private consolePid(nodeId: string): string {
    return path.posix.join(this.stateDir, 'console', `${nodeId}.pid`);
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
    checkNodeId(nodeId);
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
    const base = {
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
    const vmid = await this.createInRange(base, listed, ctx);
    this.known.set(nodeId, { vmid, hostname: identity.hostname });
    logger.info({ target: this.name, nodeId, vmid }, 'proxmox vm created');
    return publicPart(identity);
  }

  /** `qm create` on the lowest free id of the range, moving on when the id turns out to be taken. */
  private async createInRange(base: Omit<QmCreateOptions, 'vmid'>, vms: readonly QmListEntry[], ctx: DriverContext): Promise<number> {
    const [low, high] = this.range;
    const listed = new Set(vms.map((v) => v.vmid));
    let collisions = 0;
    for (let vmid = low; vmid <= high; vmid++) {
      if (listed.has(vmid) || this.reserved.has(vmid) || this.usedElsewhere.has(vmid)) continue;
      this.reserved.add(vmid);
      try {
        await withProgress(ctx, `qm create ${vmid} (${base.name}: import disk)`, this.run(qmCreateArgv({ ...base, vmid }), ctx, TIMEOUT.create));
        return vmid;
      } catch (err) {
        if (!vmidTaken(commandStderr(err) ?? '')) throw err;
        collisions++;
        if (!(await this.qmList(ctx)).some((v) => v.vmid === vmid)) this.usedElsewhere.add(vmid);
        logger.debug({ target: this.name, vmid, nodeId: base.name }, 'vmid taken meanwhile; trying the next one');
      } finally {
        this.reserved.delete(vmid);
      }
    }
    throw new VmidRangeExhaustedError(this.name, low, high, collisions);
  }

  async start(nodeId: string, ctx: DriverContext): Promise<void> {
    checkNodeId(nodeId);
    // Ownership checked afresh (not from memory): `qm start` must never reach a VM that is not ours.
    const [vm] = await this.findOwned(nodeId, ctx);
    if (!vm) throw new TargetNodeNotFoundError(this.name, nodeId, 'start');
    const { vmid, status } = vm;
    const { hostname } = vm.record.identity;
    await this.host.mkdir(path.posix.join(this.stateDir, 'console'), 0o700);
    if (status !== 'stopped') {
      // A retried start: the VM runs (or is paused, prelaunch…); keep (or restore) a reader until readiness went by.
      if (!consoleReady(await this.readConsole(nodeId), hostname)) await this.ensureReader(nodeId, vmid, hostname, ctx);
      return;
    }
    // A console from an earlier run must not report readiness for this one.
    await this.stopReader(nodeId);
    await this.host.remove(this.consoleLog(nodeId));
    await this.startReader(nodeId, vmid, hostname, ctx);
    try {
      await withProgress(ctx, `qm start ${vmid}`, this.run(['qm', 'start', String(vmid)], ctx, TIMEOUT.start));
    } catch (err) {
      await this.stopReader(nodeId);
      throw err;
    }
    logger.info({ target: this.name, nodeId, vmid }, 'proxmox vm started');
  }

  private async readConsole(nodeId: string): Promise<string> {
    return (await this.host.readFile(this.consoleLog(nodeId)))?.toString('utf8') ?? '';
  }

  /**
   * Make sure a console reader runs while readiness has not been seen; true when it has been
   * after all (a reader that just exited did so because the line went by: read the log again).
   */
  private async ensureReader(nodeId: string, vmid: number, hostname: string, ctx: DriverContext): Promise<boolean> {
    if (await this.readerRunning(nodeId)) return false;
    if (consoleReady(await this.readConsole(nodeId), hostname)) return true;
    await this.startReader(nodeId, vmid, hostname, ctx);
    return false;
  }

  private async readerPid(nodeId: string): Promise<number | undefined> {
    const pid = Number((await this.host.readFile(this.consolePid(nodeId)))?.toString('utf8').trim() ?? '0');
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  }

  private async readerRunning(nodeId: string): Promise<boolean> {
    const pid = await this.readerPid(nodeId);
    return pid !== undefined && (await this.host.isRunning(pid, this.consoleLog(nodeId)));
  }

  private async startReader(nodeId: string, vmid: number, hostname: string, ctx: DriverContext): Promise<void> {
    const socket = path.posix.join(this.serialDir, `${vmid}.serial0`);
    await this.run(['perl', '-e', CONSOLE_READER, socket, this.consoleLog(nodeId), this.consolePid(nodeId), hostname, String(SERIAL_WAIT_SECONDS)], ctx);
  }

  private async stopReader(nodeId: string): Promise<void> {
    const pid = await this.readerPid(nodeId);
    if (pid === undefined) return;
    await this.host.stop(pid, this.consoleLog(nodeId), 5_000);
    await this.host.remove(this.consolePid(nodeId));
  }

  async address(nodeId: string, ctx: DriverContext): Promise<NodeAddress> {
    const { vmid } = await this.lookup(nodeId, ctx, 'locate');
    let output: string;
    try {
      output = (await this.run(['qm', 'guest', 'cmd', String(vmid), 'network-get-interfaces'], ctx)).stdout;
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
    const log = await this.readConsole(nodeId);
    if (consoleReady(log, hostname)) return true;
    const status = await this.qmStatus(vmid, ctx);
    if (status === undefined || status === 'stopped') {
      this.known.delete(nodeId);
      throw new NodeNotRunningError(nodeId, this.name, log.trimEnd().split('\n').slice(-15).join('\n'));
    }
    // A reader that died (killed by hand, a host reboot) is restarted: late, but a slow boot is still seen.
    return this.ensureReader(nodeId, vmid, hostname, ctx);
  }

  async destroy(nodeId: string, ctx: DriverContext): Promise<void> {
    checkNodeId(nodeId);
    const facts = await this.hostFacts(ctx);
    let owned = await this.findOwned(nodeId, ctx);
    // Renamed by hand? Ours are still recognised by their description.
    if (owned.length === 0) owned = await this.findOwned(nodeId, ctx, { scanAll: true });
    for (const vm of owned) await this.destroyVm(vm, nodeId, ctx);
    this.known.delete(nodeId);
    await this.stopReader(nodeId);
    const prefix = `kubedos-${nodeId}-`;
    const snippets = (await this.host.readdir(facts.snippetDir))
      .filter((file) => file.startsWith(prefix) && /^[0-9a-f]{12}\.(user|meta)\.yaml$/.test(file.slice(prefix.length)))
      .map((file) => path.posix.join(facts.snippetDir, file));
    await this.run(['rm', '-f', '--', this.consoleLog(nodeId), ...snippets], ctx);
  }

  /** Stop and destroy one VM; the ownership check is repeated right here, where it matters. */
  private async destroyVm({ vmid, status, config }: OwnedVm, nodeId: string, ctx: DriverContext): Promise<void> {
    if (this.ownedRecord(vmid, config)?.nodeId !== nodeId) throw new NotOwnedVmError(this.name, vmid, nodeId);
    const locked = config.lock !== undefined;
    if (status !== 'stopped') await withProgress(ctx, `qm stop ${vmid}`, this.run(qmStopArgv(vmid, locked), ctx, TIMEOUT.start));
    await withProgress(ctx, `qm destroy ${vmid}`, this.run(qmDestroyArgv(vmid, locked), ctx, TIMEOUT.start));
    logger.info({ target: this.name, nodeId, vmid }, 'proxmox vm destroyed');
  }

  async list(filter: { platform?: string; fleet?: string }, ctx: DriverContext): Promise<OwnedNode[]> {
    const vms = (await this.qmList(ctx)).filter((v) => this.inRange(v.vmid));
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
