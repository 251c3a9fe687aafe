/**
 * Where a new microVM goes: each host's capacity under the target's limits, and the least loaded
 * host that still has room (pure; the driver supplies what the hosts report).
 */

export interface HostFacts {
  /** Online CPUs of the host. */
  cpus: number;
  /** MemTotal of the host, in bytes. */
  memoryBytes: number;
}

export interface PlacementLimits {
  maxMicrovms?: number;
  cpuOversubscription: number;
  memoryOversubscription: number;
  /** /30 blocks of the NAT subnet (one per microVM), when the network is NAT. */
  natBlocks?: number;
}

export interface VmShape {
  cpus: number;
  memoryBytes: number;
}

/** How many microVMs of this shape a host takes. */
export function hostCapacity(facts: HostFacts, limits: PlacementLimits, vm: VmShape): number {
  const byCpu = Math.floor((facts.cpus * limits.cpuOversubscription) / vm.cpus);
  const byMemory = Math.floor((facts.memoryBytes * limits.memoryOversubscription) / vm.memoryBytes);
  return Math.max(0, Math.min(byCpu, byMemory, limits.maxMicrovms ?? Infinity, limits.natBlocks ?? Infinity));
}

export interface HostLoad {
  capacity: number;
  /** microVMs on the host now, including those being made. */
  microvms: number;
}

/**
 * The host a new microVM goes to: the one with the lowest share of its capacity in use (ties: fewer
 * microVMs, then the order of the spec), among those with room; undefined when none has.
 */
export function leastLoaded(hosts: readonly HostLoad[]): number | undefined {
  let best: number | undefined;
  hosts.forEach((h, i) => {
    if (h.microvms >= h.capacity) return;
    if (best === undefined) {
      best = i;
      return;
    }
    const b = hosts[best]!;
    const share = h.microvms / h.capacity;
    const bestShare = b.microvms / b.capacity;
    if (share < bestShare || (share === bestShare && h.microvms < b.microvms)) best = i;
  });
  return best;
}
