/**
 * The image's NoCloud-net reader: deploy-time identity for machines that boot from the network
 * and have no seed disk. The kernel command line carries cloud-init's own syntax,
 * `ds=nocloud;s=http://<server>/<path>/` (also `ds=nocloud-net`, and `seedfrom=` for `s=`), and
 * the reader fetches `<url>meta-data` and `<url>user-data` and hands them to the NoCloud reader
 * (KUBEDOS_CIDATA_DIR), so one parser and one set of rules apply whatever carried the identity;
 * a stock cloud-init image reads the same argument.
 *
 * First boot does not wait for the system's networking, so the reader puts a temporary address on
 * the NIC it booted from: `BOOTIF=01-<mac>` names it (the PXELINUX convention), `ip=<client>::<gw>:
 * <netmask>` gives the address the network boot got (iPXE expands both; see
 * src/targets/baremetal/media.ts). The address is given a lifetime of two minutes rather than
 * removed afterwards: systemd-networkd runs DHCP alongside first boot and is usually handed the
 * same address (it makes the lifetime its lease's); removing it would take the node off the
 * network. Without `ip=` the network is assumed to be up already.
 *
 * It runs only with that argument, so other platforms never wait on it; an unreachable server or
 * an empty answer applies nothing (the node then makes its own host keys). http:// only: the image
 * has no TLS client, so the URL is the node's secret (the boot server makes one per node, and
 * serves it to one address only).
 *
 * bash, for /dev/tcp; each request runs under `timeout`. For the unit tests: KUBEDOS_CMDLINE (a
 * file read instead of /proc/cmdline), KUBEDOS_NOCLOUD_NET_NO_LINK=1 (leave the network alone),
 * KUBEDOS_NOCLOUD_NET_ATTEMPTS (tries of each request, 2 s apart; default 15), plus the NoCloud
 * reader's KUBEDOS_ROOT.
 */

import { bashHttpClient } from './bash-http';

/** Path of the reader: a metadata.d hook of kubedos-firstboot, after the NoCloud one. */
export const NOCLOUD_NET_READER_PATH = '/usr/lib/kubedos/metadata.d/15-nocloud-net';

// A plain template literal: \${ and \\ are bash's, ${…} are TypeScript's.
export const NOCLOUD_NET_READER = `#!/bin/bash
# KubeDos NoCloud-net reader (metadata.d hook of kubedos-firstboot; runs before sshd). Fetches the
# node's NoCloud meta-data and user-data from ds=nocloud;s=http://…/ on the kernel command line and
# applies them with the NoCloud reader. See src/foundry/nocloud-net-reader.ts.
set -euo pipefail

# One HTTP/1.0 GET on /dev/tcp: HOST PORT PATH OUT. Exit 0 for 200, 4 for 404, 1 otherwise.
${bashHttpClient({
  tag: 'nocloud-net',
  flag: '--get',
  params: ['host', 'port', 'path', 'out'],
  host: 'host',
  method: 'GET',
  version: '1.0',
  headers: [['Host: %s:%s', '"$host"', '"$port"'], ['Accept: text/plain'], ['Connection: close']],
  untilClose: true,
})}

say() { echo "kubedos: nocloud-net: $*"; }
fail() { echo "kubedos: nocloud-net: error: $*"; exit 1; }

seed="" ipconf="" bootif=""
read -r -a args < "\${KUBEDOS_CMDLINE:-/proc/cmdline}"
for arg in "\${args[@]}"; do
  case $arg in
    ds=nocloud\\;* | ds=nocloud-net\\;*)
      IFS=';' read -r -a kv <<< "\${arg#ds=}"
      for pair in "\${kv[@]:1}"; do
        case $pair in s=* | seedfrom=*) seed=\${pair#*=} ;; esac
      done
      ;;
    ip=*) ipconf=\${arg#ip=} ;;
    BOOTIF=*) bootif=\${arg#BOOTIF=} ;;
  esac
done
[ -n "$seed" ] || exit 0
[[ $seed =~ ^http://([A-Za-z0-9.-]+)(:([0-9]{1,5}))?(/[A-Za-z0-9._~/%-]*)$ ]] || fail "ds=nocloud;s=$seed: only an http:// URL of a host or IPv4 address is read"
host=\${BASH_REMATCH[1]} port=\${BASH_REMATCH[3]:-80} base=\${BASH_REMATCH[4]}
case $base in */) ;; *) base="$base/" ;; esac

here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "\${TMPDIR:-/run}/kubedos-nocloud-net.XXXXXX")
added="" iface="" routed=""
cleanup() {
  if [ -n "$routed" ]; then ip route del "$routed" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# The address the network boot got, on the NIC it booted from (when the kernel was told both).
if [ "\${KUBEDOS_NOCLOUD_NET_NO_LINK:-}" != 1 ] && [ -n "$ipconf" ] && [ -n "$bootif" ]; then
  IFS=':' read -r client _server gateway netmask _rest <<< "$ipconf"
  mac=\${bootif#01-}
  mac=\${mac//-/:}
  mac=\${mac,,}
  if command -v udevadm > /dev/null; then udevadm settle --timeout=15 || true; fi
  for dev in /sys/class/net/*; do
    if [ "$(cat "$dev/address" 2>/dev/null)" = "$mac" ]; then iface=\${dev##*/}; break; fi
  done
  [ -n "$iface" ] || fail "no network interface has the boot MAC $mac"
  prefix=0
  IFS=. read -r -a octets <<< "\${netmask:-255.255.255.0}"
  for o in "\${octets[@]}"; do
    while [ "$o" -gt 0 ]; do prefix=$((prefix + (o & 1))); o=$((o >> 1)); done
  done
  ip link set dev "$iface" up
  # Expires by itself (see above): the DHCP client of the system takes it over, or it goes.
  if [[ $client =~ ^[0-9.]+$ ]] && ip addr add "$client/$prefix" dev "$iface" valid_lft 120 preferred_lft 120 2>/dev/null; then added="$client/$prefix"; fi
  if [ -n "$gateway" ] && [[ $host =~ ^[0-9.]+$ ]] && ip route add "$host/32" via "$gateway" dev "$iface" 2>/dev/null; then routed="$host/32"; fi
  say "asking $host:$port on $iface (\${added:-no address added})"
fi

get() { timeout 10 "$0" --get "$host" "$port" "$base$1" "$work/$1"; }

# What this reader put on the NIC, again: systemd-networkd, taking the link over beside first boot,
# drops addresses and routes it did not make until its own DHCP lease brings the network back.
restore() {
  if [ -n "$added" ]; then ip addr replace "$added" dev "$iface" valid_lft 120 preferred_lft 120 2>/dev/null || true; fi
  if [ -n "$routed" ]; then ip route replace "$routed" via "$gateway" dev "$iface" 2>/dev/null || true; fi
}

# One document, retried for up to half a minute (the link may take a while to carry traffic, and
# may stop for a moment while networkd takes it over): 0 read, 4 not served, 1 no answer.
fetch() {
  local rc=1 attempt
  for attempt in $(seq 1 "\${KUBEDOS_NOCLOUD_NET_ATTEMPTS:-15}"); do
    rc=0
    get "$1" || rc=$?
    if [ "$rc" = 0 ] || [ "$rc" = 4 ]; then return "$rc"; fi
    sleep 2
    restore
  done
  return "$rc"
}

rc=0
fetch meta-data || rc=$?
if [ "$rc" = 4 ]; then say "the server has no meta-data: no metadata applied"; exit 0; fi
if [ "$rc" != 0 ]; then say "$host:$port did not answer: no metadata applied"; exit 0; fi
rc=0
fetch user-data || rc=$?
if [ "$rc" = 4 ]; then rm -f "$work/user-data"; elif [ "$rc" != 0 ]; then fail "cannot read \${base}user-data"; fi
say "read meta-data$([ -f "$work/user-data" ] && echo ' and user-data') from $host:$port"

KUBEDOS_CIDATA_DIR=$work "$here/10-nocloud"
`;
