/**
 * The image's MMDS reader: deploy-time identity for Firecracker microVMs, which have no disk to
 * carry a cidata seed. Firecracker's microVM metadata service (MMDS, V2) answers HTTP on
 * 169.254.169.254 on the interface the VM config names; the Foundry stores the node's NoCloud
 * documents there as two strings (src/targets/mmds.ts):
 *
 *   { "latest": { "meta-data": "<meta-data>", "user-data": "#cloud-config …" } }
 *
 * so that `GET /latest/meta-data` (IMDS form, text/plain) returns the very text a cidata seed
 * holds. The reader fetches both with a V2 session token, then hands them to the NoCloud reader
 * (KUBEDOS_CIDATA_DIR), so one parser and one set of rules apply whatever carried the identity.
 *
 * It runs only when the kernel command line asks for it (`kubedos.metadata=mmds`, or
 * `kubedos.metadata=mmds:<ipv4>`; the Firecracker bundle's boot_args carry it), so no other
 * substrate ever waits on an address that does not answer. The guest has no address this early
 * (first boot runs before networking): the reader puts a link-local one on the interface
 * (`kubedos.metadata.iface=`, else the first that is not loopback) and removes it afterwards.
 * MMDS unreachable or empty: nothing applied, the node makes its own host keys (like no seed).
 *
 * bash, for /dev/tcp (the image has no HTTP client); each request runs under `timeout`. For the
 * unit tests: KUBEDOS_CMDLINE (a file read instead of /proc/cmdline), KUBEDOS_MMDS_PORT,
 * KUBEDOS_MMDS_NO_LINK=1 (leave the network alone), plus the NoCloud reader's KUBEDOS_ROOT.
 */

import { bashHttpClient } from './bash-http';

/** Path of the reader: a metadata.d hook of kubedos-firstboot, after the NoCloud one. */
export const MMDS_READER_PATH = '/usr/lib/kubedos/metadata.d/20-mmds';

/** Kernel argument that turns the reader on. */
export const MMDS_KERNEL_ARG = 'kubedos.metadata=mmds';

// The script is a plain template literal: \${ and \\ are bash's, ${…} are TypeScript's.

/** The guest's temporary address while it talks to MMDS (link-local, removed afterwards). */
export const MMDS_GUEST_ADDRESS = '169.254.169.1/16';

export const MMDS_READER = `#!/bin/bash
# KubeDos MMDS reader (metadata.d hook of kubedos-firstboot; runs before sshd). Fetches the node's
# NoCloud meta-data and user-data from Firecracker's MMDS (V2) and applies them with the NoCloud
# reader. Only with kubedos.metadata=mmds on the kernel command line. See src/foundry/mmds-reader.ts.
set -euo pipefail
port=\${KUBEDOS_MMDS_PORT:-80}

# One HTTP/1.1 request on /dev/tcp: METHOD PATH OUT [HEADER...]. The body goes to OUT; the exit
# status is 0 for 200, 4 for 404, 1 otherwise. Run under timeout by the caller.
${bashHttpClient({
  tag: 'mmds',
  params: ['addr', 'method', 'path', 'out'],
  host: 'addr',
  method: '$method',
  headers: [['Host: %s', '"$addr"'], ['Accept: text/plain'], ['Content-Length: 0']],
  headerArgs: true,
})}

say() { echo "kubedos: mmds: $*"; }
fail() { echo "kubedos: mmds: error: $*"; exit 1; }

addr="" iface=""
read -r -a args < "\${KUBEDOS_CMDLINE:-/proc/cmdline}"
for arg in "\${args[@]}"; do
  case $arg in
    kubedos.metadata=mmds) addr=169.254.169.254 ;;
    kubedos.metadata=mmds:*) addr=\${arg#kubedos.metadata=mmds:} ;;
    kubedos.metadata.iface=*) iface=\${arg#kubedos.metadata.iface=} ;;
  esac
done
[ -n "$addr" ] || exit 0
[[ $addr =~ ^[0-9]{1,3}(\\.[0-9]{1,3}){3}$ ]] || fail "kubedos.metadata=mmds:$addr is not an IPv4 address"

here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "\${TMPDIR:-/run}/kubedos-mmds.XXXXXX")
added=""
cleanup() {
  if [ -n "$added" ]; then ip addr del "$added" dev "$iface" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ "\${KUBEDOS_MMDS_NO_LINK:-}" != 1 ]; then
  # Interfaces are named (and maybe renamed) by udev: let it finish first.
  if command -v udevadm > /dev/null; then udevadm settle --timeout=15 || true; fi
  if [ -z "$iface" ]; then
    for dev in /sys/class/net/*; do
      name=\${dev##*/}
      if [ "$name" != lo ]; then iface=$name; break; fi
    done
  fi
  [ -n "$iface" ] && [ -e "/sys/class/net/$iface" ] || fail "no network interface to reach MMDS on (kubedos.metadata.iface=\${iface:-unset})"
  ip link set dev "$iface" up
  if ip addr add ${MMDS_GUEST_ADDRESS} dev "$iface" 2>/dev/null; then added=${MMDS_GUEST_ADDRESS}; fi
  ip route replace "$addr/32" dev "$iface"
  say "asking $addr on $iface"
fi

request() { timeout 5 "$0" --request "$addr" "$@"; }

# A session token (V2), retried while the link comes up.
token=""
for attempt in 1 2 3 4 5; do
  if request PUT /latest/api/token "$work/token" 'X-metadata-token-ttl-seconds: 60'; then token=$(cat "$work/token"); break; fi
  sleep 1
done
if [ -z "$token" ]; then say "MMDS at $addr did not answer: no metadata applied"; exit 0; fi
[[ $token =~ ^[A-Za-z0-9+/=._-]+$ ]] || fail "MMDS sent a token with unexpected characters"

rc=0
request GET /latest/meta-data "$work/meta-data" "X-metadata-token: $token" || rc=$?
if [ "$rc" = 4 ]; then say "MMDS holds no meta-data: no metadata applied"; exit 0; fi
[ "$rc" = 0 ] || fail "cannot read /latest/meta-data from MMDS"
rc=0
request GET /latest/user-data "$work/user-data" "X-metadata-token: $token" || rc=$?
if [ "$rc" = 4 ]; then rm -f "$work/user-data"; elif [ "$rc" != 0 ]; then fail "cannot read /latest/user-data from MMDS"; fi
say "read meta-data$([ -f "$work/user-data" ] && echo ' and user-data')"

KUBEDOS_CIDATA_DIR=$work "$here/10-nocloud"
`;
