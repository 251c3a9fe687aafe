/**
 * Which node holds which machine: one lease file per machine, named by its provisioning MAC (the
 * one identity of the box that does not depend on how an inventory spells its BMC), in a
 * directory every worker that provisions the inventory shares.
 *
 * A lease is taken by writing it under a temporary name and hard-linking it to its final name:
 * link(2) fails with EEXIST when the name exists, atomically, also on NFS (where O_EXCL was not
 * always honoured), and a reader never sees half a lease. So of two workers (or two fleets, or
 * two targets naming the same box) racing for a machine exactly one wins. A lease is removed only
 * by the node that holds it, after its machine was powered off and its media ejected.
 *
 * Why here and not on the machine: Redfish has no compare-and-swap that BMCs implement alike
 * (ETag/If-Match is optional), and OpenStack's sushy-tools, the emulator the tests run, refuses
 * to PATCH anything of a ComputerSystem but Boot and IndicatorLED (no AssetTag).
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { NodeLabels } from '../driver';

export interface MachineLease {
  kubedos: 1;
  mac: string;
  machine: string;
  bmc: string;
  target: string;
  nodeId: string;
  labels: NodeLabels;
  /** ISO time it was taken, and by which worker host (for people reading the file). */
  since: string;
  host: string;
}

export type ClaimResult = { claimed: true; lease: MachineLease } | { claimed: false; holder: MachineLease | undefined };

function parse(text: string): MachineLease | undefined {
  try {
    const lease = JSON.parse(text) as Partial<MachineLease>;
    return lease.kubedos === 1 && typeof lease.nodeId === 'string' && typeof lease.mac === 'string' ? (lease as MachineLease) : undefined;
  } catch {
    return undefined;
  }
}

export class LeaseStore {
  constructor(readonly dir: string) {}

  file(mac: string): string {
    return path.join(this.dir, `${mac.toLowerCase().replace(/:/g, '-')}.lease`);
  }

  async read(mac: string): Promise<MachineLease | undefined> {
    const text = await fs.readFile(this.file(mac), 'utf8').catch(() => undefined);
    return text === undefined ? undefined : parse(text);
  }

  /**
   * Take the machine for a node. A lease the same node already holds (a retried create) counts as
   * taken by it; one another node holds is reported with its holder.
   */
  async claim(lease: Omit<MachineLease, 'kubedos' | 'since' | 'host'>): Promise<ClaimResult> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o755 });
    const full: MachineLease = { kubedos: 1, ...lease, since: new Date().toISOString(), host: os.hostname() };
    const tmp = path.join(this.dir, `.claim-${randomBytes(8).toString('hex')}`);
    const handle = await fs.open(tmp, 'wx', 0o644);
    try {
      await handle.writeFile(`${JSON.stringify(full, null, 2)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await fs.link(tmp, this.file(lease.mac));
      return { claimed: true, lease: full };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = await this.read(lease.mac);
      if (holder && holder.nodeId === lease.nodeId && holder.target === lease.target) return { claimed: true, lease: holder };
      return { claimed: false, holder };
    } finally {
      await fs.rm(tmp, { force: true });
    }
  }

  /** Give the machine back, if (and only if) this node holds it. */
  async release(mac: string, nodeId: string): Promise<boolean> {
    const holder = await this.read(mac);
    if (!holder || holder.nodeId !== nodeId) return false;
    await fs.rm(this.file(mac), { force: true });
    return true;
  }

  /** Every lease in the directory. */
  async list(): Promise<MachineLease[]> {
    const names = await fs.readdir(this.dir).catch(() => [] as string[]);
    const leases = await Promise.all(names.filter((n) => n.endsWith('.lease')).map((n) => fs.readFile(path.join(this.dir, n), 'utf8').then(parse, () => undefined)));
    return leases.filter((l): l is MachineLease => l !== undefined);
  }
}
