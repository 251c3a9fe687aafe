/**
 * VM ids for new nodes: the lowest id of `vmidRange` that `qm list` does not show and no create
 * of this driver is trying; `qm create` refusing an id that exists (made meanwhile by another
 * worker, or used on another cluster node, which `qm list` does not show) moves on to the next
 * one. Ids refused while still absent from `qm list` are remembered as used elsewhere in the
 * cluster.
 */
import { VmidRangeExhaustedError } from '../../errors';
import { logger } from '../../log';
import { commandStderr } from '../host';
import { vmidTaken, type QmListEntry } from './parse';

export class VmidAllocator {
  /** VM ids a create of this driver is trying right now. */
  private readonly reserved = new Set<number>();
  /** VM ids `qm create` refused as existing although `qm list` did not show them: used on other cluster nodes. */
  private readonly usedElsewhere = new Set<number>();

  constructor(
    /** The target's name, for errors and logs. */
    private readonly target: string,
    /** `vmidRange`, inclusive. */
    readonly range: readonly [number, number],
  ) {}

  /** Whether KubeDos may use (and so may own) this id. */
  inRange(vmid: number): boolean {
    return Number.isInteger(vmid) && vmid >= this.range[0] && vmid <= this.range[1];
  }

  /**
   * Run `create` on the lowest free id of the range, moving on when the id turns out to be taken;
   * the id it succeeded with. `listed` is a fresh `qm list`; `list` runs it again.
   */
  async allocate(nodeId: string, listed: readonly QmListEntry[], create: (vmid: number) => Promise<void>, list: () => Promise<QmListEntry[]>): Promise<number> {
    const [low, high] = this.range;
    const seen = new Set(listed.map((v) => v.vmid));
    let collisions = 0;
    for (let vmid = low; vmid <= high; vmid++) {
      if (seen.has(vmid) || this.reserved.has(vmid) || this.usedElsewhere.has(vmid)) continue;
      this.reserved.add(vmid);
      try {
        await create(vmid);
        return vmid;
      } catch (err) {
        if (!vmidTaken(commandStderr(err) ?? '')) throw err;
        collisions++;
        if (!(await list()).some((v) => v.vmid === vmid)) this.usedElsewhere.add(vmid);
        logger.debug({ target: this.target, vmid, nodeId }, 'vmid taken meanwhile; trying the next one');
      } finally {
        this.reserved.delete(vmid);
      }
    }
    throw new VmidRangeExhaustedError(this.target, low, high, collisions);
  }
}
