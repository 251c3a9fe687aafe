/** Reading what `qm` and `pvesm` print (pure). */

/** One line of `qm list`. */
export interface QmListEntry {
  vmid: number;
  name: string;
  status: string;
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

/** `qm config`: `key: value` lines (the description percent-encoded, see decodeDescription in ./record.ts). */
export function parseQmConfig(text: string): Record<string, string> {
  const config: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([a-z][a-z0-9_-]*): ?(.*)$/.exec(line);
    if (m) config[m[1]!] = m[2]!;
  }
  return config;
}

/** `qm status`: `status: running`; undefined when the line is missing. */
export function parseQmStatus(text: string): string | undefined {
  return /status:\s*(\S+)/.exec(text)?.[1];
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

/** `qm config` / `qm status` of a VM that is gone (destroyed between `qm list` and now). */
export function vmMissing(stderr: string): boolean {
  return /does not exist/.test(stderr);
}
