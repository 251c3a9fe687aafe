/**
 * What the vsphere driver reads from the inventory: where the target's names point (resolved
 * once per driver and checked, each missing one an error naming the spec field and what exists
 * instead), and the VMs in the folder KubeDos owns with the properties it decides on, parsed from
 * `govc object.collect -json`.
 */
import { VsphereInventoryError } from '../../errors';
import type { DriverContext } from '../driver';
import { isNotFound, type Govc } from './govc';
import type { VsphereTargetSpec } from './index';

/** Where a target's nodes go, as inventory paths. */
export interface Placement {
  /** `VirtualCenter` or `HostAgent` (a standalone ESXi host). */
  apiType: string;
  /** vCenter: templates and linked clones; ESXi: neither, a disk copy per node. */
  vcenter: boolean;
  datacenter: string;
  /** The folder KubeDos owns (ESXi: the datacenter's VM folder, it has no others). */
  folder: string;
  pool: string;
  /** The host to place on, when the spec names one. */
  host?: string;
  /** The datastore's inventory path. */
  datastore: string;
  /** Its name, as datastore paths (`[name] dir/file`) write it. */
  datastoreName: string;
  network: string;
}

/** The properties of one VM the driver reads. */
export interface VmInfo {
  /** Managed object reference, `VirtualMachine:vm-42`: what every command is given. */
  ref: string;
  /** Inventory path. */
  path: string;
  name: string;
  annotation: string;
  extraConfig: Record<string, string>;
  template: boolean;
  powerState: string;
  /** IPv4 addresses VMware Tools reports, preferred first. */
  ipv4: string[];
  /** Names of the root snapshots. */
  snapshots: string[];
  /** Datastore paths (`[ds] dir/file.vmdk`) of its disks. */
  disks: string[];
  guestId?: string;
  firmware?: string;
}

/** The managed object `govc ls -json` prints (only what is read here). */
interface VmObject {
  self?: { type?: string; value?: string };
  name?: string;
  config?: {
    annotation?: string;
    extraConfig?: Array<{ key?: unknown; value?: unknown }> | null;
    template?: boolean;
    guestId?: string;
    firmware?: string;
    hardware?: { device?: Array<{ backing?: { fileName?: unknown } | null }> | null };
  } | null;
  runtime?: { powerState?: string };
  guest?: { ipAddress?: string | null; net?: Array<{ ipAddress?: unknown }> | null } | null;
  snapshot?: { rootSnapshotList?: Array<{ name?: string }> | null } | null;
}

/** A VM's properties from the object `govc ls -json` gives. */
export function vmInfo(path: string, o: VmObject): VmInfo {
  const extraConfig: Record<string, string> = {};
  for (const e of o.config?.extraConfig ?? []) {
    if (typeof e.key === 'string') extraConfig[e.key] = e.value === null || e.value === undefined ? '' : String(e.value);
  }
  const ips: string[] = [];
  if (typeof o.guest?.ipAddress === 'string' && o.guest.ipAddress) ips.push(o.guest.ipAddress);
  for (const nic of o.guest?.net ?? []) for (const ip of Array.isArray(nic.ipAddress) ? nic.ipAddress : []) if (typeof ip === 'string') ips.push(ip);
  const disks = (o.config?.hardware?.device ?? []).map((d) => d.backing?.fileName).filter((f): f is string => typeof f === 'string' && f.endsWith('.vmdk'));
  return {
    ref: `VirtualMachine:${o.self?.value ?? ''}`,
    path,
    name: o.name ?? path.slice(path.lastIndexOf('/') + 1),
    annotation: o.config?.annotation ?? '',
    extraConfig,
    template: o.config?.template === true,
    powerState: o.runtime?.powerState ?? '',
    ipv4: [...new Set(ips)].filter((ip) => /^\d{1,3}(\.\d{1,3}){3}$/.test(ip) && !/^169\.254\./.test(ip)),
    snapshots: (o.snapshot?.rootSnapshotList ?? []).map((s) => s.name ?? ''),
    disks,
    guestId: o.config?.guestId,
    firmware: o.config?.firmware,
  };
}

/** `govc ls -json WHERE`: the VMs among the elements (a folder's children, or the one VM). */
async function listVms(govc: Govc, where: string, ctx: DriverContext): Promise<VmInfo[]> {
  const [listing] = await govc.json<{ elements?: Array<{ Path?: string; Object?: VmObject }> | null }>(['ls', '-json', where], ctx, { step: `list ${where}` });
  return (listing?.elements ?? []).filter((e) => e.Object?.self?.type === 'VirtualMachine' && e.Path).map((e) => vmInfo(e.Path!, e.Object!));
}

/** The VMs directly in a folder (the folder KubeDos owns; on ESXi every VM of the host). */
export function vmsIn(govc: Govc, folder: string, ctx: DriverContext): Promise<VmInfo[]> {
  return listVms(govc, folder, ctx);
}

/** The VM called `name` directly in `folder`; undefined when there is none. */
export async function vmAt(govc: Govc, folder: string, name: string, ctx: DriverContext): Promise<VmInfo | undefined> {
  try {
    return (await listVms(govc, `${folder}/${name}`, ctx)).find((vm) => vm.path === `${folder}/${name}`);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/** Inventory paths below `root` of one type (`govc find`). */
async function find(govc: Govc, root: string, type: string, ctx: DriverContext): Promise<string[]> {
  try {
    return (await govc.run(['find', root, '-type', type], ctx)).split('\n').map((l) => l.trim()).filter(Boolean);
  } catch (err) {
    if (isNotFound(err)) return [];
    throw err;
  }
}

const baseName = (p: string) => p.slice(p.lastIndexOf('/') + 1);
const parentOf = (p: string) => p.slice(0, p.lastIndexOf('/'));

async function exists(govc: Govc, where: string, ctx: DriverContext): Promise<boolean> {
  try {
    await govc.run(['object.collect', '-s', where, 'name'], ctx);
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}

/** The one of `paths` named `name` (paths in host or datastore folders), else an inventory error. */
function pick(target: string, field: string, name: string | undefined, paths: readonly string[], base: (p: string) => string = baseName): string {
  if (name === undefined) {
    if (paths.length === 1) return paths[0]!;
    throw new VsphereInventoryError(target, field, undefined, paths.map(base));
  }
  const found = paths.find((p) => base(p) === name || p.endsWith(`/${name}`));
  if (!found) throw new VsphereInventoryError(target, field, name, paths.map(base));
  return found;
}

/**
 * Resolve and check every name of the spec: datacenter, cluster and/or host, resource pool,
 * datastore, network; on vCenter make the folder KubeDos owns (level by level).
 */
export async function resolvePlacement(govc: Govc, target: string, spec: VsphereTargetSpec, ctx: DriverContext): Promise<Placement> {
  const [about] = await govc.json<{ about?: { apiType?: string } }>(['about', '-json'], ctx);
  const apiType = about?.about?.apiType ?? 'unknown';
  const vcenter = apiType === 'VirtualCenter';

  const datacenter = pick(target, 'datacenter', spec.datacenter, await find(govc, '/', 'd', ctx));
  let compute: string;
  let host: string | undefined;
  if (spec.cluster !== undefined) {
    compute = pick(target, 'cluster', spec.cluster, await find(govc, `${datacenter}/host`, 'c', ctx));
  } else {
    const computes = await find(govc, `${datacenter}/host`, 'r', ctx);
    compute = spec.host !== undefined ? '' : pick(target, 'cluster', undefined, computes);
  }
  if (spec.host !== undefined) {
    host = pick(target, 'host', spec.host, await find(govc, compute || `${datacenter}/host`, 'h', ctx));
    compute ||= parentOf(host);
  }
  const pool = `${compute}/Resources${spec.resourcePool ? `/${spec.resourcePool}` : ''}`;
  if (!(await exists(govc, pool, ctx))) {
    throw new VsphereInventoryError(target, 'resourcePool', spec.resourcePool ?? 'Resources', (await find(govc, `${compute}/Resources`, 'p', ctx)).map((p) => p.slice(`${compute}/Resources/`.length)).filter(Boolean));
  }
  const datastore = `${datacenter}/datastore/${spec.datastore}`;
  if (!(await exists(govc, datastore, ctx))) {
    throw new VsphereInventoryError(target, 'datastore', spec.datastore, (await find(govc, `${datacenter}/datastore`, 's', ctx)).map((p) => p.slice(`${datacenter}/datastore/`.length)));
  }
  const network = `${datacenter}/network/${spec.network}`;
  if (!(await exists(govc, network, ctx))) {
    const networks = [...(await find(govc, `${datacenter}/network`, 'n', ctx)), ...(await find(govc, `${datacenter}/network`, 'g', ctx))];
    throw new VsphereInventoryError(target, 'network', spec.network, networks.map((p) => p.slice(`${datacenter}/network/`.length)));
  }
  let folder = `${datacenter}/vm`;
  if (vcenter) {
    for (const part of spec.folder.split('/')) {
      folder = `${folder}/${part}`;
      if (await exists(govc, folder, ctx)) continue;
      try {
        await govc.run(['folder.create', folder], ctx);
      } catch (err) {
        if (!(await exists(govc, folder, ctx))) throw err; // made meanwhile by another worker: fine
      }
    }
  }
  return { apiType, vcenter, datacenter, folder, pool, host, datastore, datastoreName: baseName(spec.datastore), network };
}
