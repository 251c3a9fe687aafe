/**
 * The commands the Firecracker driver runs on a host: constant POSIX sh scripts whose values are
 * positional arguments (`sh -c SCRIPT sh ARG…`), never spliced into the text, and argv builders
 * for them and for the jailer. Each script is one SSH round trip and does one job completely, so a
 * step killed halfway is repeated safely.
 */

/**
 * Facts for placing a node, in one round trip: online CPUs, MemTotal (KiB), committed nodes, and
 * whether this node exists already (`exists` + its node.json line), was begun by an attempt that
 * died before committing it (`partial`: made again on that host), or not (`absent`).
 * Args: nodesDir nodeId.
 */
export const PLACE_SCRIPT = `set -u
nodes=$1 id=$2
nproc
awk '/^MemTotal:/ { print $2 }' /proc/meminfo
n=0
for f in "$nodes"/*/node.json; do [ -f "$f" ] && n=$((n + 1)); done
echo "$n"
if [ -f "$nodes/$id/node.json" ]; then echo exists; cat "$nodes/$id/node.json"; echo; elif [ -d "$nodes/$id" ]; then echo partial; else echo absent; fi
`;

/**
 * Make a node's jail and writable layer, O(1) in the image's size: hard links to the prepared
 * kernel, initrd and read-only rootfs (one inode each, shared by every node of the host), a sparse
 * ext4 layer of the given size (its metadata only), the jail's /run (for the API socket), all
 * owned by the jailed user where it writes. A half-made jail of an earlier attempt is removed first.
 * With NAT, also claims the lowest free /30 index (mkdir is the lock) unless this node holds one:
 * prints `nat <index>`. Args: imagesDir nodeDir jailDir uid gid layerBytes [natDir natBlocks nodeId].
 */
export const CREATE_SCRIPT = `set -eu
images=$1 node=$2 jail=$3 uid=$4 gid=$5 size=$6
mkdir -p -m 0700 "$node"
rm -rf "$jail"
mkdir -p "$jail/root/run"
for f in vmlinux initrd rootfs.ext4; do ln "$images/$f" "$jail/root/$f"; done
truncate -s "$size" "$jail/root/layer.ext4"
mkfs.ext4 -q -F -L kubedos-layer -E lazy_itable_init=1,lazy_journal_init=1,nodiscard "$jail/root/layer.ext4"
chmod 0600 "$jail/root/layer.ext4"
chown "$uid:$gid" "$jail/root/layer.ext4" "$jail/root/run"
if [ $# -ge 9 ]; then
  nat=$7 blocks=$8 id=$9
  mkdir -p "$nat"
  for d in "$nat"/*/; do
    if [ -f "$d/node" ] && [ "$(cat "$d/node")" = "$id" ]; then d=\${d%/}; echo "nat \${d##*/}"; exit 0; fi
  done
  i=0
  while [ "$i" -lt "$blocks" ]; do
    if mkdir "$nat/$i" 2>/dev/null; then echo "$id" > "$nat/$i/node"; echo "nat $i"; exit 0; fi
    i=$((i + 1))
  done
  echo "no free /30 left in the NAT subnet ($blocks blocks)" >&2
  exit 75
fi
`;

/** Exit status of LAUNCH_SCRIPT when the bridge is missing. */
export const EXIT_NO_BRIDGE = 10;

/**
 * Start a node's firecracker through the jailer, once: under the node's lock, a firecracker of this
 * jail that already runs (an earlier attempt of this step) is kept and its pid printed as
 * `running <pid>`; otherwise the tap is made (owned by the jailed user; on the bridge, or with the
 * /30's host address for NAT), a stale API socket removed, and the jailer started in a session of
 * its own, stdout (the serial console) to console.log and stderr to firecracker.log: `started <pid>`.
 * Args: nodeDir jailId tap mode(bridge|nat) bridge-or-hostCIDR uid gid socketPath jailer-argv…
 * (Processes are found with an anchored regex, not a fixed string: grep's own argv must not match.)
 */
export const LAUNCH_SCRIPT = `set -eu
node=$1 jail=$2 tap=$3 mode=$4 net=$5 uid=$6 gid=$7 socket=$8
shift 8
exec 9>>"$node/lock"
flock 9
for f in $(grep -lzE -e "^--id=$jail\\$" /proc/[0-9]*/cmdline 2>/dev/null); do
  pid=\${f#/proc/}; pid=\${pid%/cmdline}
  echo "running $pid"
  exit 0
done
if [ "$mode" = bridge ] && [ ! -d "/sys/class/net/$net/bridge" ]; then echo "no bridge $net" >&2; exit ${EXIT_NO_BRIDGE}; fi
if [ ! -e "/sys/class/net/$tap" ]; then ip tuntap add dev "$tap" mode tap user "$uid" group "$gid"; fi
if [ "$mode" = bridge ]; then ip link set dev "$tap" master "$net"; else ip addr replace "$net" dev "$tap"; fi
ip link set dev "$tap" up
rm -f "$socket"
: > "$node/console.log"
setsid "$@" 9>&- < /dev/null >> "$node/console.log" 2>> "$node/firecracker.log" &
echo "$!" > "$node/pid"
echo "started $!"
`;

/**
 * Everything of a node, whatever is left of it, once its microVM was asked to stop: any process
 * still running for its jail (SIGKILL), the tap, the jail (hard links, layer, socket, device
 * nodes), the cgroup directories (rmdir on a cgroup filesystem, where files cannot be removed;
 * anything else is a plain directory), the NAT claim, and last the node's state directory, its
 * node.json after everything else (while it exists, `list` still finds the node).
 * Args: nodeDir jailId jailDir tap natClaim('' when none) cgroupDir…
 */
export const TEARDOWN_SCRIPT = `set -u
node=$1 id=$2 jail=$3 tap=$4 nat=$5
shift 5
for f in $(grep -lzE -e "^--id=$id\\$" /proc/[0-9]*/cmdline 2>/dev/null); do
  pid=\${f#/proc/}; kill -KILL "\${pid%/cmdline}" 2>/dev/null || true
done
i=0
while [ "$i" -lt 50 ] && grep -qzE -e "^--id=$id\\$" /proc/[0-9]*/cmdline 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
if [ -e "/sys/class/net/$tap" ]; then ip link del dev "$tap"; fi
rm -rf "$jail"
for d in "$@"; do
  [ -d "$d" ] || continue
  case $(stat -f -c %T "$d") in cgroup*) rmdir "$d" ;; *) rm -rf "$d" ;; esac
done
if [ -n "$nat" ]; then rm -rf "$nat"; fi
if [ -d "$node" ]; then
  find "$node" -mindepth 1 ! -name node.json -delete
  rm -f "$node/node.json"
  rmdir "$node"
fi
`;

/**
 * Every node of a target on a host in one round trip: per node directory with a node.json, a line
 * `node <name> <pid-or-0> <live 1|0>` then the node.json line. A node is live when a process has
 * `--id=<its jail>` on its command line (firecracker's, as the jailer execs it; zombies have none).
 * Args: nodesDir.
 */
export const LIST_SCRIPT = `set -u
nodes=$1
live=$(grep -hzE -e '^--id=[A-Za-z0-9-]+$' /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' '\\n')
for d in "$nodes"/*/; do
  [ -f "$d/node.json" ] || continue
  name=\${d%/}; name=\${name##*/}
  pid=$(cat "$d/pid" 2>/dev/null || echo 0)
  jail=$(cat "$d/jail" 2>/dev/null || echo none)
  if printf '%s\\n' "$live" | grep -qxF -e "--id=$jail"; then up=1; else up=0; fi
  echo "node $name $pid $up"
  cat "$d/node.json"
  echo
done
`;

/**
 * NAT for a target on a host (idempotent): IPv4 forwarding on, and an nftables table of the
 * target's own that masquerades the subnet's traffic to anywhere outside it. Args: table subnet.
 */
export const NAT_SCRIPT = `set -eu
table=$1 subnet=$2
echo 1 > /proc/sys/net/ipv4/ip_forward
nft add table ip "$table"
nft add chain ip "$table" postrouting '{ type nat hook postrouting priority 100 ; policy accept ; }'
nft flush chain ip "$table" postrouting
nft add rule ip "$table" postrouting ip saddr "$subnet" ip daddr != "$subnet" masquerade
`;

export function sh(script: string, ...args: (string | number)[]): string[] {
  return ['sh', '-c', script, 'sh', ...args.map(String)];
}

export interface JailerArgs {
  jailer: string;
  firecracker: string;
  jailId: string;
  uid: number;
  gid: number;
  chrootBase: string;
  cgroupVersion: 1 | 2;
  cgroups: readonly string[];
  /** The API socket inside the jail. */
  apiSocket: string;
}

/** The jailer's argv (docs/jailer.md); what follows `--` goes to firecracker. */
export function jailerArgv(a: JailerArgs): string[] {
  return [
    a.jailer,
    '--id', a.jailId,
    '--exec-file', a.firecracker,
    '--uid', String(a.uid),
    '--gid', String(a.gid),
    '--chroot-base-dir', a.chrootBase,
    '--cgroup-version', String(a.cgroupVersion),
    ...a.cgroups.flatMap((c) => ['--cgroup', c]),
    '--',
    '--api-sock', a.apiSocket,
  ];
}

/** One `node …` record of LIST_SCRIPT's output. */
export interface ListedNode {
  name: string;
  pid: number;
  live: boolean;
  json: string;
}

export function parseList(stdout: string): ListedNode[] {
  const lines = stdout.split('\n');
  const out: ListedNode[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = /^node (\S+) (\d+) ([01])$/.exec(lines[i]!);
    if (!m) continue;
    out.push({ name: m[1]!, pid: Number(m[2]), live: m[3] === '1', json: lines[i + 1] ?? '' });
    i++;
  }
  return out;
}

export interface PlaceFacts {
  cpus: number;
  memoryBytes: number;
  nodes: number;
  state: 'exists' | 'partial' | 'absent';
  /** node.json of the node, when it exists. */
  existing?: string;
}

export function parsePlace(stdout: string): PlaceFacts {
  const [cpus, memKiB, nodes, state, json] = stdout.split('\n');
  const facts = { cpus: Number(cpus), memoryBytes: Number(memKiB) * 1024, nodes: Number(nodes) };
  if (![facts.cpus, facts.memoryBytes, facts.nodes].every((n) => Number.isFinite(n) && n >= 0) || !['exists', 'partial', 'absent'].includes(state ?? '')) {
    throw new Error(`unexpected host facts: ${JSON.stringify(stdout.slice(0, 200))}`);
  }
  return { ...facts, state: state as PlaceFacts['state'], ...(state === 'exists' ? { existing: json ?? '' } : {}) };
}
