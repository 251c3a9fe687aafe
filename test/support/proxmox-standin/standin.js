#!/usr/bin/env node
// @ts-check
/**
 * STAND-IN for Proxmox VE's `qm` and `pvesm`, for tests only: no Proxmox, no QEMU, no guest runs.
 * The `qm` and `pvesm` launchers next to this file exec it; the test's sshd puts them first on
 * PATH (index.ts). State lives in the directory named by KUBEDOS_PVE_STANDIN:
 *
 *   host.json            node name, bridges, storages, ids used on other cluster nodes, timings
 *   argv.log             one JSON line per invocation: tool, argv exactly as received, exit, stderr
 *   qemu-server/<id>.conf  each VM's config (JSON), claimed with O_EXCL like pmxcfs's config file
 *   run/<id>.pid|.serial0|.qga   the simulated VM process, its serial socket, its "guest agent"
 *   lvm/<storage>/<vol>  volumes of lvmthin storages; dir storages use their own path
 *
 * What it checks, the way real qm/pvesm would refuse (messages modelled on qemu-server):
 * - option syntax as PVE's CLI parses it (`--opt value`, `--opt=value`, booleans with an optional
 *   0/1): unknown options, missing values, too many/few positional arguments, VM ids outside
 *   100–999999999; an option given twice is refused too (stricter than Getopt::Long, which keeps
 *   the last);
 * - each value against qm's schema for the options modelled: property strings (unknown keys,
 *   duplicate keys, enums, integers, booleans), DNS-name VM names, tag syntax, description length,
 *   UUIDs, CIDRs; options of qm create not modelled here are refused as such, never accepted blindly;
 * - create semantics: `import-from` only with `<storage>:0`, source file must exist; storages must
 *   exist and hold the content type used (images for disks and cloud-init drives, snippets for
 *   cicustom); boot order devices must exist; a VM id in use here or on another cluster node is
 *   refused ("VM <id> already exists on node '<n>'"); two creates racing for one id: the config
 *   is claimed atomically and the loser gets "config file already exists"; a create is locked
 *   (`lock: create`, no name yet) until its disks are "imported";
 * - start/stop/destroy semantics: locked VMs refused without --skiplock, start of a running VM,
 *   destroy of a running VM, unknown bridges, missing snippet files at start.
 *
 * `qm start` "boots" a small process (this file with `__vm`) that listens on the serial socket like
 * QEMU's `serial0: socket` chardev (output with no client connected is lost, as with QEMU), reads
 * the NoCloud user-data that Proxmox would put on the cloud-init drive (the cicustom snippets), and
 * after `bootMs` prints what the KubeDos image prints: the machine-id and host key it was given,
 * then `kubedos: ready <hostname>`; then its "guest agent" answers network-get-interfaces.
 */
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const net = require('node:net');
const crypto = require('node:crypto');
const { spawn } = require('node:child_process');

class Fail extends Error {
  /** @param {string} message @param {number} [code] */
  constructor(message, code = 255) {
    super(message);
    this.code = code;
  }
}

/** @param {string} opt @param {string} msg */
const paramError = (opt, msg) => new Fail(`400 Parameter verification failed.\n${opt}: ${msg}`);
const sleep = (/** @type {number} */ ms) => new Promise((r) => setTimeout(r, ms));

const STATE = process.env.KUBEDOS_PVE_STANDIN ?? '';
const P = {
  host: () => path.join(STATE, 'host.json'),
  log: () => path.join(STATE, 'argv.log'),
  confDir: () => path.join(STATE, 'qemu-server'),
  conf: (/** @type {number} */ id) => path.join(STATE, 'qemu-server', `${id}.conf`),
  run: (/** @type {number} */ id, /** @type {string} */ ext) => path.join(STATE, 'run', `${id}.${ext}`),
};

/**
 * @typedef {{ type: 'dir', path: string, content: string[] } | { type: 'lvmthin', vgname: string, content: string[] }} Storage
 * @typedef {{ node: string, bridges: string[], storages: Record<string, Storage>, otherNodes?: Record<string, string>, bootMs?: number, createDelayMs?: number, importDelayMs?: number }} Host
 */

/** @returns {Host} */
function host() {
  return JSON.parse(fs.readFileSync(P.host(), 'utf8'));
}

/** @param {string} file @param {string} data @param {number} [mode] */
function writeAtomic(file, data, mode = 0o644) {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, data, { mode });
  fs.renameSync(tmp, file);
}

/** @param {number} vmid @returns {Record<string, string> | undefined} */
function readConf(vmid) {
  try {
    return JSON.parse(fs.readFileSync(P.conf(vmid), 'utf8'));
  } catch (err) {
    if (/** @type {NodeJS.ErrnoException} */ (err).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** @param {number} vmid */
function mustConf(vmid) {
  const conf = readConf(vmid);
  if (!conf) throw new Fail(`Configuration file 'nodes/${host().node}/qemu-server/${vmid}.conf' does not exist`);
  return conf;
}

/** @param {number} pid */
function alive(pid) {
  try {
    return !/\) Z /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** @param {number} vmid @returns {number | undefined} */
function runningPid(vmid) {
  const pid = Number(fs.existsSync(P.run(vmid, 'pid')) ? fs.readFileSync(P.run(vmid, 'pid'), 'utf8') : 0);
  if (!(pid > 0) || !alive(pid)) return undefined;
  const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  return cmdline.includes('__vm') && cmdline.includes(String(vmid)) && cmdline.includes(STATE) ? pid : undefined;
}

// ---------------------------------------------------------------------------------------------
// value checks (qm's JSON schema, the parts modelled)

/** @typedef {(v: string) => string | undefined} Check */
/** @type {Check} */
const any = () => undefined;
/** @type {Check} */
const bool = (v) => (/^(0|1|yes|no|on|off|true|false)$/i.test(v) ? undefined : `type check ('boolean') failed - got '${v}'`);
/** @param {number} min @param {number} [max] @returns {Check} */
const int = (min, max) => (v) =>
  !/^-?\d+$/.test(v) ? `type check ('integer') failed - got '${v}'` : Number(v) < min ? `value must have a minimum value of ${min}` : max !== undefined && Number(v) > max ? `value must have a maximum value of ${max}` : undefined;
/** @param {string[]} values @returns {Check} */
const oneOf = (values) => (v) => (values.includes(v) ? undefined : `value '${v}' does not have a value in the enumeration '${values.join(', ')}'`);
/** @param {RegExp} re @param {string} what @returns {Check} */
const matches = (re, what) => (v) => (re.test(v) ? undefined : `value does not match the regex pattern (${what})`);

const DNS_NAME = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*$/;
const TAG = /^[a-z0-9_][a-z0-9_+.-]*$/i;
const UUID = /^[a-fA-F0-9]{8}(?:-[a-fA-F0-9]{4}){3}-[a-fA-F0-9]{12}$/;
const STORAGE_ID = /^[a-z][a-z0-9\-_.]*[a-z0-9]$/i;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;
const CIDR4 = /^(\d{1,3}\.){3}\d{1,3}\/\d{1,2}$/;
const IP4 = /^(\d{1,3}\.){3}\d{1,3}$/;
const SIZE = /^\d+(\.\d+)?[KMGT]?$/;
const NEW_DISK = /^(([^/:\s]+):)?(\d+(\.\d+)?)$/;
const NIC_MODELS = ['e1000', 'e1000-82540em', 'e1000-82544gc', 'e1000-82545em', 'e1000e', 'i82551', 'i82557b', 'i82559er', 'ne2k_isa', 'ne2k_pci', 'pcnet', 'rtl8139', 'virtio', 'vmxnet3'];
const OSTYPES = ['other', 'wxp', 'w2k', 'w2k3', 'w2k8', 'wvista', 'win7', 'win8', 'win10', 'win11', 'l24', 'l26', 'solaris'];
const GUEST_COMMANDS = ['fsfreeze-freeze', 'fsfreeze-status', 'fsfreeze-thaw', 'fstrim', 'get-fsinfo', 'get-host-name', 'get-memory-block-info', 'get-memory-blocks', 'get-osinfo', 'get-time', 'get-timezone', 'get-users', 'get-vcpus', 'info', 'network-get-interfaces', 'ping', 'shutdown', 'suspend-disk', 'suspend-hybrid', 'suspend-ram'];
const CONTENT_TYPES = ['images', 'rootdir', 'vztmpl', 'iso', 'backup', 'snippets', 'import'];

/**
 * A property string `k=v,k=v` (the first key may be implicit): unknown and duplicate keys refused.
 * @param {string} opt @param {string} value @param {Record<string, Check>} keys @param {string} [defaultKey]
 * @returns {Record<string, string>}
 */
function propertyString(opt, value, keys, defaultKey) {
  /** @type {Record<string, string>} */
  const out = {};
  for (const part of value.split(',')) {
    if (part === '') throw paramError(opt, `invalid format - empty property in '${value}'`);
    const eq = part.indexOf('=');
    let key = eq < 0 ? defaultKey : part.slice(0, eq);
    const v = eq < 0 ? part : part.slice(eq + 1);
    if (key === undefined) throw paramError(opt, `invalid format - value without key, but schema does not define a default key`);
    if (!(key in keys)) throw paramError(`${opt}.${key}`, 'property is not defined in schema and the schema does not allow additional properties');
    if (key in out) throw paramError(opt, `invalid format - duplicate key in comma-separated list property: ${key}`);
    const err = keys[key](v);
    if (err) throw paramError(`${opt}.${key}`, err);
    out[key] = v;
  }
  return out;
}

/** @param {Record<string, Check>} keys @param {string} [defaultKey] @returns {(opt: string) => Check} */
const prop = (keys, defaultKey) => (opt) => (v) => {
  propertyString(opt, v, keys, defaultKey);
  return undefined;
};

const DRIVE_KEYS = {
  file: any, media: oneOf(['cdrom', 'disk']), size: matches(SIZE, 'disk size'), format: oneOf(['raw', 'cow', 'qcow', 'qed', 'qcow2', 'vmdk', 'cloop']),
  cache: oneOf(['none', 'writethrough', 'writeback', 'unsafe', 'directsync']), discard: oneOf(['ignore', 'on']), ssd: bool, iothread: bool, backup: bool,
  replicate: bool, ro: bool, serial: any, aio: oneOf(['native', 'threads', 'io_uring']), 'import-from': any, snapshot: bool, detect_zeroes: bool,
};
const EFIDISK_KEYS = { file: any, efitype: oneOf(['2m', '4m']), format: DRIVE_KEYS.format, 'import-from': any, 'ms-cert': oneOf(['2011', '2023', '2023k']), 'pre-enrolled-keys': bool, size: DRIVE_KEYS.size };
const NET_KEYS = {
  model: oneOf(NIC_MODELS), bridge: matches(/^[-_.\w\d]+$/, 'bridge'), firewall: bool, link_down: bool, macaddr: matches(MAC, 'mac address'), mtu: int(1, 65520),
  queues: int(0, 64), rate: any, tag: int(1, 4094), trunks: any, ...Object.fromEntries(NIC_MODELS.map((m) => [m, matches(MAC, 'mac address')])),
};

/** Checks of `qm create` options (names with N: numbered families). Anything else is refused. */
/** @type {Record<string, (opt: string) => Check>} */
const CREATE_OPTIONS = {
  name: () => matches(DNS_NAME, 'dns-name'),
  description: () => (v) => (v.length > 8192 ? 'value may only be 8192 characters long' : undefined),
  tags: () => (v) => {
    const bad = v.split(/[;, ]/).filter(Boolean).find((t) => !TAG.test(t));
    return bad === undefined ? undefined : `invalid format - invalid tag '${bad}'`;
  },
  ostype: () => oneOf(OSTYPES),
  machine: prop({ type: matches(/^(pc|pc(-i440fx)?-\d+(\.\d+)+(\+pve\d+)?(\.pxe)?|q35|pc-q35-\d+(\.\d+)+(\+pve\d+)?(\.pxe)?|virt(?:-\d+(\.\d+)+)?(\+pve\d+)?)$/, 'machine type'), viommu: oneOf(['intel', 'virtio']), 'enable-s3': bool, 'enable-s4': bool }, 'type'),
  bios: () => oneOf(['seabios', 'ovmf']),
  efidisk0: prop(EFIDISK_KEYS, 'file'),
  cores: () => int(1),
  sockets: () => int(1),
  memory: prop({ current: int(16) }, 'current'),
  scsihw: () => oneOf(['lsi', 'lsi53c810', 'virtio-scsi-pci', 'virtio-scsi-single', 'megasas', 'pvscsi']),
  'scsiN(0-30)': prop({ ...DRIVE_KEYS, iothread: bool, queues: int(2), product: any, vendor: any, scsiblock: bool }, 'file'),
  'virtioN(0-15)': prop({ ...DRIVE_KEYS, iothread: bool }, 'file'),
  'sataN(0-5)': prop(DRIVE_KEYS, 'file'),
  'ideN(0-3)': prop({ ...DRIVE_KEYS, model: any }, 'file'),
  boot: prop({ legacy: matches(/^[acdn]{1,4}$/, 'legacy boot'), order: matches(/^[a-z0-9]+(;[a-z0-9]+)*$/, 'boot order') }, 'legacy'),
  'netN(0-31)': prop(NET_KEYS, 'model'),
  'serialN(0-3)': () => matches(/^(\/dev\/[^,]+|socket)$/, 'serial device'),
  vga: prop({ type: oneOf(['cirrus', 'none', 'qxl', 'qxl2', 'qxl3', 'qxl4', 'serial0', 'serial1', 'serial2', 'serial3', 'std', 'virtio', 'virtio-gl', 'vmware']), memory: int(4, 512), clipboard: oneOf(['vnc']) }, 'type'),
  agent: prop({ enabled: bool, fstrim_cloned_disks: bool, 'freeze-fs': bool, type: oneOf(['virtio', 'isa']) }, 'enabled'),
  smbios1: prop({ base64: bool, family: any, manufacturer: any, product: any, serial: any, sku: any, uuid: matches(UUID, 'UUID'), version: any }),
  citype: () => oneOf(['configdrive2', 'nocloud', 'opennebula']),
  cicustom: prop({ meta: any, network: any, user: any, vendor: any }),
  'ipconfigN(0-31)': prop({ ip: (v) => (v === 'dhcp' || CIDR4.test(v) ? undefined : `invalid format - IPv4 CIDR or 'dhcp' expected, got '${v}'`), gw: matches(IP4, 'IPv4'), ip6: any, gw6: any }),
  onboot: () => bool,
  start: () => bool,
  cpu: prop({ cputype: any, flags: any, hidden: bool }, 'cputype'),
};

/** The checker of a `qm create` option name, including numbered families (scsi0 … scsi30). */
function createOption(/** @type {string} */ name) {
  if (CREATE_OPTIONS[name] && !name.includes('N(')) return CREATE_OPTIONS[name];
  for (const [family, check] of Object.entries(CREATE_OPTIONS)) {
    const m = /^(\w+)N\((\d+)-(\d+)\)$/.exec(family);
    const n = m && new RegExp(`^${m[1]}(\\d+)$`).exec(name);
    if (m && n && Number(n[1]) >= Number(m[2]) && Number(n[1]) <= Number(m[3])) return check;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// argument parsing as PVE::CLIHandler (Getopt::Long) does

/**
 * @param {string[]} args @param {(name: string) => 'string' | 'boolean' | undefined} kindOf
 * @param {string[]} positionalNames
 */
function parseArgs(args, kindOf, positionalNames) {
  /** @type {string[]} */
  const positional = [];
  /** @type {Map<string, string>} */
  const opts = new Map();
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const m = /^--?([A-Za-z][A-Za-z0-9_-]*)(?:=([\s\S]*))?$/.exec(a);
    if (!m) {
      positional.push(a);
      continue;
    }
    const name = m[1];
    const kind = kindOf(name);
    if (!kind) throw new Fail(`Unknown option: ${name}\n400 unable to parse option`);
    if (opts.has(name)) throw new Fail(`stand-in: option --${name} given twice (qm would silently keep the last one)`);
    let value = m[2];
    if (value === undefined) {
      if (kind === 'boolean') {
        const next = args[i + 1];
        if (next !== undefined && /^(0|1|yes|no|on|off|true|false)$/i.test(next)) value = args[++i];
        else value = '1';
      } else {
        if (i + 1 >= args.length) throw new Fail(`Option ${name} requires an argument\n400 unable to parse option`);
        value = args[++i];
      }
    }
    opts.set(name, value);
  }
  if (positional.length > positionalNames.length) throw new Fail(`400 too many arguments\nunexpected: ${positional.slice(positionalNames.length).join(' ')}`);
  if (positional.length < positionalNames.length) throw new Fail(`400 not enough arguments\nmissing: <${positionalNames.slice(positional.length).join('> <')}>`);
  return { positional, opts };
}

/** @param {string} v */
function vmidArg(v) {
  if (!/^\d+$/.test(v) || Number(v) < 100 || Number(v) > 999_999_999) throw paramError('vmid', `invalid format - value does not look like a valid VM ID`);
  return Number(v);
}

/** @param {Map<string, string>} opts @param {string} name */
const truthy = (opts, name) => /^(1|yes|on|true)$/i.test(opts.get(name) ?? '0');

// ---------------------------------------------------------------------------------------------
// storage

/** @param {string} volid */
function parseVolid(volid) {
  const m = /^([^:\s]+):(.+)$/.exec(volid);
  if (!m || !STORAGE_ID.test(m[1])) throw new Fail(`unable to parse volume ID '${volid}'`);
  const store = host().storages[m[1]];
  if (!store) throw new Fail(`storage '${m[1]}' does not exist`);
  return { storeId: m[1], store, volname: m[2] };
}

/** Path of a volume, and its content type. @param {string} volid */
function volumePath(volid) {
  const { storeId, store, volname } = parseVolid(volid);
  if (store.type === 'dir') {
    let m;
    if ((m = /^snippets\/([^/]+)$/.exec(volname))) return { storeId, store, vtype: 'snippets', file: path.join(store.path, 'snippets', m[1]) };
    if ((m = /^iso\/([^/]+\.(iso|img))$/i.exec(volname))) return { storeId, store, vtype: 'iso', file: path.join(store.path, 'template', 'iso', m[1]) };
    if ((m = /^(\d+)\/(vm-\d+-(disk-\d+|cloudinit)\.(raw|qcow2|vmdk))$/.exec(volname))) return { storeId, store, vtype: 'images', file: path.join(store.path, 'images', m[1], m[2]) };
    throw new Fail(`unable to parse directory volume name '${volname}'`);
  }
  if (!/^(vm|base)-\d+-(disk-\d+|cloudinit)$/.test(volname)) throw new Fail(`unable to parse lvm volume name '${volname}'`);
  return { storeId, store, vtype: 'images', file: path.join(STATE, 'lvm', storeId, volname) };
}

/** @param {string} storeId @param {string} content */
function storeWith(storeId, content) {
  const store = host().storages[storeId];
  if (!store) throw new Fail(`storage '${storeId}' does not exist`);
  if (!store.content.includes(content)) throw new Fail(content === 'images' ? `storage '${storeId}' does not support vm images` : `storage '${storeId}' does not support content-type '${content}'`);
  return store;
}

/** Allocate a new volume for a VM on a storage. @param {string} storeId @param {number} vmid @param {string} name @param {object} meta */
function allocVolume(storeId, vmid, name, meta) {
  const store = storeWith(storeId, 'images');
  const volname = store.type === 'dir' ? `${vmid}/vm-${vmid}-${name}.raw` : `vm-${vmid}-${name}`;
  const { file } = volumePath(`${storeId}:${volname}`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(meta), { mode: 0o600, flag: 'wx' });
  return `${storeId}:${volname}`;
}

/** Every volume file of a VM, on every storage. @param {number} vmid */
function volumesOf(vmid) {
  /** @type {string[]} */
  const files = [];
  for (const [id, store] of Object.entries(host().storages)) {
    const dir = store.type === 'dir' ? path.join(store.path, 'images', String(vmid)) : path.join(STATE, 'lvm', id);
    for (const f of fs.existsSync(dir) ? fs.readdirSync(dir) : []) if (f.startsWith(`vm-${vmid}-`)) files.push(path.join(dir, f));
  }
  return files;
}

const DRIVE_RE = /^(ide|sata|scsi|virtio)\d+$|^efidisk0$/;

// ---------------------------------------------------------------------------------------------
// qm

/** @param {string[]} args */
async function qm(args) {
  const [cmd, ...rest] = args;
  switch (cmd) {
    case 'list': {
      parseArgs(rest, (n) => (n === 'full' ? 'boolean' : undefined), []);
      return qmList();
    }
    case 'create':
      return qmCreate(rest);
    case 'config': {
      const { positional } = parseArgs(rest, (n) => (n === 'current' ? 'boolean' : n === 'snapshot' ? 'string' : undefined), ['vmid']);
      const conf = mustConf(vmidArg(positional[0]));
      for (const key of Object.keys(conf).sort()) {
        if (key === 'digest') continue;
        // PVE::Tools::encode_text: control and non-ASCII bytes and ':' percent-encoded, '%' left alone.
        const v = key === 'description' ? [...Buffer.from(conf[key], 'utf8')].map((b) => (b >= 0x20 && b <= 0x7e && b !== 0x3a ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`)).join('') : conf[key];
        process.stdout.write(`${key}: ${v}\n`);
      }
      return;
    }
    case 'status': {
      const { positional } = parseArgs(rest, (n) => (n === 'verbose' ? 'boolean' : undefined), ['vmid']);
      const vmid = vmidArg(positional[0]);
      mustConf(vmid);
      process.stdout.write(`status: ${runningPid(vmid) ? 'running' : 'stopped'}\n`);
      return;
    }
    case 'start':
      return qmStart(rest);
    case 'stop':
      return qmStop(rest);
    case 'destroy':
      return qmDestroy(rest);
    case 'guest':
      if (rest[0] !== 'cmd') throw new Fail(`stand-in: 'qm guest ${rest[0] ?? ''}' is not modelled`);
      return qmGuestCmd(rest.slice(1));
    case 'terminal':
      throw new Fail(`stand-in: 'qm terminal' is interactive (socat on the serial socket) and not modelled`);
    case undefined:
      throw new Fail('400 not enough arguments\nqm <COMMAND> [ARGS] [OPTIONS]');
    default:
      if (['set', 'importdisk', 'disk', 'clone', 'template', 'shutdown', 'reset', 'reboot', 'resume', 'suspend', 'cloudinit', 'pending', 'unlock', 'wait', 'monitor', 'agent'].includes(cmd)) {
        throw new Fail(`stand-in: 'qm ${cmd}' is a real command but not modelled here`);
      }
      throw new Fail(`unknown command 'qm ${cmd}'`);
  }
}

function qmList() {
  const ids = (fs.existsSync(P.confDir()) ? fs.readdirSync(P.confDir()) : []).map((f) => /^(\d+)\.conf$/.exec(f)?.[1]).filter(Boolean).map(Number).sort((a, b) => a - b);
  if (ids.length === 0) return;
  const row = (/** @type {string[]} */ c) => `${c[0].padStart(10)} ${c[1].padEnd(20)} ${c[2].padEnd(10)} ${c[3].padEnd(10)} ${c[4].padStart(12)} ${c[5].padEnd(10)}\n`;
  let text = row(['VMID', 'NAME', 'STATUS', 'MEM(MB)', 'BOOTDISK(GB)', 'PID']);
  for (const id of ids) {
    const conf = readConf(id);
    if (!conf) continue;
    const pid = runningPid(id);
    const disk = /size=(\d+)M/.exec(conf.scsi0 ?? '');
    text += row([String(id), conf.name ?? '', pid ? 'running' : 'stopped', String(conf.memory ?? 512), (disk ? Number(disk[1]) / 1024 : 0).toFixed(2), String(pid ?? 0)]);
  }
  process.stdout.write(text);
}

/** @param {string[]} rest */
async function qmCreate(rest) {
  const { positional, opts } = parseArgs(rest, (n) => {
    if (createOption(n)) return ['onboot', 'start'].includes(n) ? 'boolean' : 'string';
    if (['acpi', 'archive', 'kvm', 'numa', 'protection', 'template', 'tablet', 'storage', 'pool', 'hookscript', 'args', 'balloon', 'vcpus', 'cpulimit', 'cpuunits', 'hotplug', 'sshkeys', 'ciuser', 'cipassword', 'nameserver', 'searchdomain', 'rng0', 'tpmstate0', 'hostpci0', 'usb0', 'watchdog', 'startup', 'localtime', 'vmgenid', 'unique', 'force', 'live-restore', 'bwlimit', 'freeze'].includes(n)) {
      throw new Fail(`stand-in: 'qm create --${n}' is a real option but not modelled here`);
    }
    return undefined;
  }, ['vmid']);
  const vmid = vmidArg(positional[0]);
  for (const [name, value] of opts) {
    const err = createOption(name)?.(name)(value);
    if (err) throw paramError(name, err);
  }
  const h = host();

  // Cross-checks: drives, cloud-init, boot order.
  for (const [name, value] of opts) {
    if (!DRIVE_RE.test(name)) continue;
    const drive = propertyString(name, value, name === 'efidisk0' ? EFIDISK_KEYS : { ...DRIVE_KEYS, iothread: bool, queues: any, product: any, vendor: any, scsiblock: bool, model: any }, 'file');
    const file = drive.file;
    if (!file) throw paramError(name, 'invalid format - missing key in comma-separated list property: file');
    const nd = NEW_DISK.exec(file);
    if (drive['import-from'] !== undefined && (!nd || Number(nd[3]) !== 0)) throw paramError(name, `'import-from' requires special syntax - use <storage ID>:0,import-from=<source>`);
    if (nd) {
      if (!nd[2]) throw new Fail('no storage ID specified (and no default storage)');
      storeWith(nd[2], 'images');
      if (drive['import-from'] !== undefined) {
        const src = drive['import-from'];
        if (src.startsWith('/')) {
          if (!fs.existsSync(src) || !fs.statSync(src).isFile()) throw new Fail(`import-from: '${src}' does not exist or is not a regular file`);
        } else if (!fs.existsSync(volumePath(src).file)) throw new Fail(`volume '${src}' does not exist`);
      } else if (Number(nd[3]) === 0 && name !== 'efidisk0') throw paramError(name, 'invalid format - disk size 0 without import-from');
    } else if (/^[^:]+:cloudinit$/.test(file)) {
      if (name === 'efidisk0' || name.startsWith('virtio')) throw paramError(name, 'cloudinit drive must be ide, sata or scsi');
      storeWith(file.split(':')[0], 'images');
    } else if (file !== 'none' && file !== 'cdrom') {
      const { file: f } = file.startsWith('/') ? { file } : volumePath(file);
      if (!fs.existsSync(f)) throw new Fail(`volume '${file}' does not exist`);
    }
  }
  if (opts.has('cicustom')) {
    const ci = propertyString('cicustom', opts.get('cicustom') ?? '', { meta: any, network: any, user: any, vendor: any });
    for (const volid of Object.values(ci)) {
      storeWith(parseVolid(volid).storeId, 'snippets');
      const v = volumePath(volid);
      if (v.vtype !== 'snippets') throw paramError('cicustom', `volume '${volid}' is not a snippet`);
      if (!fs.existsSync(v.file)) throw new Fail(`volume '${volid}' does not exist`);
    }
  }
  const order = /(?:^|,)order=([^,]+)/.exec(opts.get('boot') ?? '');
  for (const dev of order ? order[1].split(';') : []) {
    if (!opts.has(dev)) throw paramError('boot', `invalid bootorder: device '${dev}' does not exist'`);
  }

  // Cluster-wide uniqueness (PVE::Cluster::check_vmid_unused), then the atomic claim under the lock.
  if (readConf(vmid)) throw new Fail(`VM ${vmid} already exists on node '${h.node}'`);
  if (h.otherNodes?.[vmid]) throw new Fail(`VM ${vmid} already exists on node '${h.otherNodes[vmid]}'`);
  await sleep(h.createDelayMs ?? 150);
  fs.mkdirSync(P.confDir(), { recursive: true });
  let fd;
  try {
    fd = fs.openSync(P.conf(vmid), 'wx');
  } catch (err) {
    if (/** @type {NodeJS.ErrnoException} */ (err).code === 'EEXIST') throw new Fail(`unable to create VM ${vmid}: config file already exists`);
    throw err;
  }
  fs.writeSync(fd, JSON.stringify({ lock: 'create' }));
  fs.closeSync(fd);

  /** @type {Record<string, string>} */
  const conf = {};
  let disk = 0;
  for (const [name, value] of [...opts].sort(([a], [b]) => (a === 'efidisk0' ? -1 : b === 'efidisk0' ? 1 : a.localeCompare(b)))) {
    if (!DRIVE_RE.test(name)) {
      conf[name] = value;
      continue;
    }
    const [file, ...props] = value.split(',');
    const nd = NEW_DISK.exec(file.replace(/^file=/, ''));
    const keep = props.filter((p) => !p.startsWith('import-from=') && !p.startsWith('size='));
    if (nd && name === 'efidisk0') {
      conf[name] = [allocVolume(nd[2], vmid, `disk-${disk++}`, { kind: 'efivars' }), ...keep, 'size=4M'].join(',');
    } else if (nd) {
      const src = /(?:^|,)import-from=([^,]+)/.exec(value)?.[1];
      let sizeM = Math.round(Number(nd[3]) * 1024);
      /** @type {Record<string, unknown>} */
      const meta = { kind: 'disk' };
      if (src) {
        await sleep(h.importDelayMs ?? 100); // the copy
        const srcFile = src.startsWith('/') ? src : volumePath(src).file;
        const head = Buffer.alloc(4);
        const rfd = fs.openSync(srcFile, 'r');
        fs.readSync(rfd, head, 0, 4, 0);
        fs.closeSync(rfd);
        const format = head.equals(Buffer.from([0x51, 0x46, 0x49, 0xfb])) ? 'qcow2' : 'raw';
        const sha256 = crypto.createHash('sha256').update(fs.readFileSync(srcFile)).digest('hex');
        Object.assign(meta, { importedFrom: src, format, sha256 });
        sizeM = Math.max(1, Math.ceil(fs.statSync(srcFile).size / (1024 * 1024)));
      }
      conf[name] = [allocVolume(nd[2], vmid, `disk-${disk++}`, meta), ...keep, `size=${sizeM}M`].join(',');
    } else if (/^[^:]+:cloudinit$/.test(file)) {
      conf[name] = [allocVolume(file.split(':')[0], vmid, 'cloudinit', { kind: 'cloudinit' }), 'media=cdrom'].join(',');
    } else {
      conf[name] = value;
    }
  }
  conf.vmgenid = crypto.randomUUID();
  conf.meta = `creation-qemu=0.0.0-standin,ctime=${Math.floor(Date.now() / 1000)}`;
  writeAtomic(P.conf(vmid), JSON.stringify(conf));
}

/** @param {string[]} rest */
async function qmStart(rest) {
  const { positional, opts } = parseArgs(rest, (n) => (['skiplock'].includes(n) ? 'boolean' : ['timeout', 'machine', 'force-cpu'].includes(n) ? 'string' : undefined), ['vmid']);
  const vmid = vmidArg(positional[0]);
  const conf = mustConf(vmid);
  const h = host();
  if (conf.lock && !truthy(opts, 'skiplock')) throw new Fail(`VM is locked (${conf.lock})`);
  if (runningPid(vmid)) throw new Fail(`VM ${vmid} already running`);
  for (const [key, value] of Object.entries(conf)) {
    if (!/^net\d+$/.test(key)) continue;
    const bridge = /(?:^|,)bridge=([^,]+)/.exec(value)?.[1];
    if (bridge && !h.bridges.includes(bridge)) throw new Fail(`bridge '${bridge}' does not exist\nstart failed: QEMU exited with code 1`);
  }
  // The cloud-init drive is (re)generated at start from the snippets: their content, as the guest will see it.
  const ciDrive = Object.entries(conf).find(([k, v]) => DRIVE_RE.test(k) && /vm-\d+-cloudinit/.test(v));
  if (ciDrive) {
    /** @type {Record<string, string>} */
    const files = {};
    const custom = conf.cicustom ? propertyString('cicustom', conf.cicustom, { meta: any, network: any, user: any, vendor: any }) : {};
    for (const [kind, volid] of Object.entries(custom)) {
      const { file } = volumePath(volid);
      if (!fs.existsSync(file)) throw new Fail(`volume '${volid}' does not exist`);
      files[`${kind}-data`] = fs.readFileSync(file, 'utf8');
    }
    files['meta-data'] ??= `instance-id: ${crypto.createHash('sha1').update(JSON.stringify(conf)).digest('hex')}\n`;
    files['user-data'] ??= '#cloud-config\n';
    files['network-config'] ??= 'version: 1\nconfig:\n  - type: physical\n    name: eth0\n    subnets:\n      - type: dhcp4\n';
    const { file } = volumePath(ciDrive[1].split(',')[0]);
    writeAtomic(file, JSON.stringify({ kind: 'cloudinit', files }), 0o600);
  }
  fs.mkdirSync(path.join(STATE, 'run'), { recursive: true });
  for (const ext of ['serial0', 'qga']) fs.rmSync(P.run(vmid, ext), { force: true });
  const child = spawn(process.execPath, [__filename, '__vm', STATE, String(vmid)], { detached: true, stdio: 'ignore', env: process.env });
  child.unref();
  fs.writeFileSync(P.run(vmid, 'pid'), String(child.pid));
  // QEMU creates its chardev sockets before qm start returns.
  for (let i = 0; i < 100 && !fs.existsSync(P.run(vmid, 'serial0')); i++) await sleep(50);
  if (!fs.existsSync(P.run(vmid, 'serial0'))) throw new Fail(`start failed: QEMU exited`);
}

/** @param {string[]} rest */
async function qmStop(rest) {
  const { positional, opts } = parseArgs(rest, (n) => (['skiplock', 'keepActive', 'overrule-shutdown'].includes(n) ? 'boolean' : ['timeout', 'migratedfrom'].includes(n) ? 'string' : undefined), ['vmid']);
  const vmid = vmidArg(positional[0]);
  const conf = mustConf(vmid);
  if (conf.lock && !truthy(opts, 'skiplock')) throw new Fail(`VM is locked (${conf.lock})`);
  const pid = runningPid(vmid);
  if (pid) {
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 100 && alive(pid); i++) await sleep(50);
    if (alive(pid)) process.kill(pid, 'SIGKILL');
  }
  for (const ext of ['pid', 'serial0', 'qga']) fs.rmSync(P.run(vmid, ext), { force: true });
}

/** @param {string[]} rest */
async function qmDestroy(rest) {
  const { positional, opts } = parseArgs(rest, (n) => (['purge', 'skiplock', 'destroy-unreferenced-disks'].includes(n) ? 'boolean' : undefined), ['vmid']);
  const vmid = vmidArg(positional[0]);
  const conf = mustConf(vmid);
  if (conf.lock && !truthy(opts, 'skiplock')) throw new Fail(`VM is locked (${conf.lock})`);
  if (runningPid(vmid)) throw new Fail(`VM ${vmid} is running - destroy failed`);
  if (conf.protection === '1') throw new Fail(`can't remove VM ${vmid} - protection mode enabled`);
  for (const [key, value] of Object.entries(conf)) {
    if (!DRIVE_RE.test(key) && !/^unused\d+$/.test(key)) continue;
    const volid = value.split(',')[0];
    if (/^[^:/]+:/.test(volid)) fs.rmSync(volumePath(volid).file, { force: true });
  }
  if (truthy(opts, 'destroy-unreferenced-disks')) for (const f of volumesOf(vmid)) fs.rmSync(f, { force: true });
  fs.rmSync(P.conf(vmid), { force: true });
}

/** @param {string[]} rest */
async function qmGuestCmd(rest) {
  const { positional } = parseArgs(rest, () => undefined, ['vmid', 'command']);
  const vmid = vmidArg(positional[0]);
  const command = positional[1];
  if (!GUEST_COMMANDS.includes(command)) throw paramError('command', `value '${command}' does not have a value in the enumeration '${GUEST_COMMANDS.join(', ')}'`);
  const conf = mustConf(vmid);
  if (!conf.agent || !/^(enabled=)?1/.test(conf.agent)) throw new Fail('No QEMU guest agent configured');
  if (!runningPid(vmid)) throw new Fail(`VM ${vmid} is not running`);
  if (!fs.existsSync(P.run(vmid, 'qga'))) throw new Fail('QEMU guest agent is not running');
  const agent = JSON.parse(fs.readFileSync(P.run(vmid, 'qga'), 'utf8'));
  if (command === 'ping') return;
  if (command === 'get-host-name') return void process.stdout.write(`${JSON.stringify({ 'host-name': agent.hostname }, null, 3)}\n`);
  if (command === 'network-get-interfaces') {
    const result = [
      { name: 'lo', 'hardware-address': '00:00:00:00:00:00', 'ip-addresses': [{ 'ip-address': '127.0.0.1', 'ip-address-type': 'ipv4', prefix: 8 }, { 'ip-address': '::1', 'ip-address-type': 'ipv6', prefix: 128 }] },
      { name: 'ens18', 'hardware-address': agent.mac, 'ip-addresses': [{ 'ip-address': agent.ip, 'ip-address-type': 'ipv4', prefix: 24 }, { 'ip-address': 'fe80::be24:11ff:fe00:1', 'ip-address-type': 'ipv6', prefix: 64 }] },
    ];
    return void process.stdout.write(`${JSON.stringify(result, null, 3)}\n`);
  }
  throw new Fail(`stand-in: guest command '${command}' is not modelled`);
}

// ---------------------------------------------------------------------------------------------
// pvesm

/** @param {string[]} args */
async function pvesm(args) {
  const [cmd, ...rest] = args;
  switch (cmd) {
    case 'status': {
      const { opts } = parseArgs(rest, (n) => (['enabled', 'format'].includes(n) ? 'boolean' : ['content', 'storage', 'target'].includes(n) ? 'string' : undefined), []);
      const content = opts.get('content');
      if (content !== undefined && !CONTENT_TYPES.includes(content)) throw paramError('content', `value '${content}' does not have a value in the enumeration '${CONTENT_TYPES.join(', ')}'`);
      const rows = Object.entries(host().storages).filter(([id, s]) => (!content || s.content.includes(content)) && (!opts.has('storage') || id === opts.get('storage')));
      let text = `${'Name'.padEnd(16)} ${'Type'.padStart(8)} ${'Status'.padStart(8)} ${'Total'.padStart(15)} ${'Used'.padStart(15)} ${'Available'.padStart(15)} ${'%'.padStart(8)}\n`;
      for (const [id, s] of rows) text += `${id.padEnd(16)} ${s.type.padStart(8)} ${'active'.padStart(8)} ${'98497780'.padStart(15)} ${'12345678'.padStart(15)} ${'86152102'.padStart(15)} ${'12.53%'.padStart(8)}\n`;
      process.stdout.write(text);
      return;
    }
    case 'path': {
      const { positional } = parseArgs(rest, () => undefined, ['volume']);
      const v = volumePath(positional[0]);
      process.stdout.write(`${v.store.type === 'lvmthin' ? `/dev/${v.store.vgname}/${positional[0].split(':')[1]}` : v.file}\n`);
      return;
    }
    case undefined:
      throw new Fail('400 not enough arguments\npvesm <COMMAND> [ARGS] [OPTIONS]');
    default:
      throw new Fail(`unknown command 'pvesm ${cmd}'`);
  }
}

// ---------------------------------------------------------------------------------------------
// the simulated VM: a serial socket, a "boot" that reads the cloud-init drive, a guest agent

/** What the KubeDos image's NoCloud reader would take from the user-data (the same keys). @param {string} userData */
function seedIdentity(userData) {
  if (!userData.startsWith('#cloud-config')) return undefined;
  const unq = (/** @type {string | undefined} */ s) => s?.replace(/''/g, "'");
  const hostname = unq(/^hostname: '((?:[^']|'')*)'$/m.exec(userData)?.[1]);
  const hostKeyPublic = unq(/^ {2}ed25519_public: '((?:[^']|'')*)'$/m.exec(userData)?.[1]);
  const machineId = /- path: \/etc\/machine-id\n(?: {4}.*\n)*? {4}content: \|\n {6}([0-9a-f]{32})/.exec(userData)?.[1];
  if (!hostname) return undefined;
  let fingerprint;
  if (hostKeyPublic) {
    const blob = Buffer.from(hostKeyPublic.split(/\s+/)[1] ?? '', 'base64');
    fingerprint = `SHA256:${crypto.createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
  }
  return { hostname, machineId, fingerprint };
}

/** @param {string[]} args */
async function runVm([, vmidText]) {
  const vmid = Number(vmidText);
  const h = host();
  const boot = h.bootMs ?? 1500;
  const conf = mustConf(vmid);
  const ciDrive = Object.entries(conf).find(([k, v]) => DRIVE_RE.test(k) && /vm-\d+-cloudinit/.test(v));
  const ci = ciDrive ? JSON.parse(fs.readFileSync(volumePath(ciDrive[1].split(',')[0]).file, 'utf8')) : undefined;
  const seed = ci ? seedIdentity(ci.files['user-data'] ?? '') : undefined;
  const hostname = seed?.hostname ?? 'debian';

  /** @type {Set<net.Socket>} */
  const clients = new Set();
  const socketPath = P.run(vmid, 'serial0');
  fs.rmSync(socketPath, { force: true });
  const server = net.createServer((s) => {
    clients.add(s);
    s.on('data', () => undefined);
    s.on('error', () => clients.delete(s));
    s.on('close', () => clients.delete(s));
  });
  // Output with no client connected is lost, as with QEMU's socket chardev.
  const emit = (/** @type {string} */ text) => {
    for (const c of clients) c.write(text.replace(/\n/g, '\r\n'));
  };
  const shutdown = () => {
    server.close();
    for (const c of clients) c.destroy();
    fs.rmSync(socketPath, { force: true });
    fs.rmSync(P.run(vmid, 'qga'), { force: true });
    process.exit(0);
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  server.listen(socketPath);

  setTimeout(() => emit(`BdsDxe: loading Boot0001 "UEFI QEMU QEMU HARDDISK" (Proxmox stand-in VM ${vmid}: nothing boots)\n`), 50);
  setTimeout(() => emit(`[    0.000000] Linux version 6.1.0-stand-in (no kernel runs)\n`), boot / 2);
  setTimeout(() => {
    if (seed) {
      emit(`[    3.100000] kubedos: metadata /usr/lib/kubedos/metadata.d/10-nocloud\n`);
      if (seed.machineId) emit(`kubedos: nocloud: machine-id ${seed.machineId}\n`);
      if (seed.fingerprint) emit(`kubedos: hostkey 256 ${seed.fingerprint} root@${hostname} (ED25519)\n`);
    } else emit(`kubedos: nocloud: no cidata seed\n`);
    emit('kubedos: firstboot done\n');
    emit(`\nkubedos: ready ${hostname}\n`);
    const mac = /=([0-9A-F:]{17})/i.exec(conf.net0 ?? '')?.[1] ?? 'bc:24:11:00:00:01';
    writeAtomic(P.run(vmid, 'qga'), JSON.stringify({ hostname, mac, ip: `10.99.${(vmid >> 8) & 255}.${vmid & 255}` }));
  }, boot);
  setInterval(() => undefined, 60_000); // stay up until stopped
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const [tool, ...args] = process.argv.slice(2);
  if (tool === '__vm') return runVm(args);
  let exit = 0;
  let stderr = '';
  try {
    if (!STATE || !fs.existsSync(P.host())) throw new Fail(`stand-in: KUBEDOS_PVE_STANDIN does not name a stand-in state directory`, 127);
    if (tool === 'qm') await qm(args);
    else if (tool === 'pvesm') await pvesm(args);
    else throw new Fail(`stand-in: unknown tool ${tool}`, 127);
  } catch (err) {
    if (err instanceof Fail) {
      stderr = err.message;
      exit = err.code;
    } else {
      stderr = `stand-in internal error: ${err instanceof Error ? err.stack : String(err)}`;
      exit = 70;
    }
    process.stderr.write(`${stderr}\n`);
  }
  if (STATE && fs.existsSync(STATE)) {
    const entry = { t: new Date().toISOString(), via: process.env.SSH_CONNECTION ? 'ssh' : 'local', tool, argv: args, exit, stderr: stderr.slice(-500) };
    fs.appendFileSync(P.log(), `${JSON.stringify(entry)}\n`);
  }
  process.exitCode = exit;
}

void main();
