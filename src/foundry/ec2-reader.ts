/**
 * The image's EC2 reader: deploy-time identity on AWS, from the instance metadata service with
 * IMDSv2 only (a session token first, as AWS recommends and as the driver's instances require:
 * `HttpTokens: required`). The Foundry launches each instance with its NoCloud `#cloud-config`
 * as user-data (the same text a cidata seed carries, src/targets/nocloud.ts); the reader fetches
 *
 *   PUT /latest/api/token                 (X-aws-ec2-metadata-token-ttl-seconds: 60)
 *   GET /latest/meta-data/instance-id     → meta-data `instance-id` (EC2's own id)
 *   GET /latest/meta-data/local-ipv4      → printed on the console
 *   GET /latest/user-data                 → user-data (404: none)
 *
 * and hands them to the NoCloud reader (KUBEDOS_CIDATA_DIR), so one parser and one set of rules
 * apply whatever carried the identity; a stock cloud-init with the Ec2 datasource reads the same
 * user-data. The documents go to a private directory under /run that is removed when the reader
 * exits, whatever happens: after first boot the node keeps no copy of the user-data, and so none
 * of the private host key besides /etc/ssh itself. (IMDS keeps serving user-data to the instance
 * for its lifetime, which is why every node gets a key of its own that is never reused.)
 *
 * It runs only on EC2: /sys/class/dmi/id/sys_vendor is "Amazon EC2" on every Nitro instance (the
 * only kind that boots UEFI images), as cloud-init's ds-identify checks; elsewhere it exits at
 * once and asks nobody. On an image that carries cloud-init (not disabled), cloud-init reads the
 * user-data instead and this reader steps aside. First boot runs before networking: unless the interface already has an
 * IPv4 address, the reader starts systemd-networkd (the image's DHCP on every NIC) and waits for
 * a lease, and only if none comes puts a link-local address on the interface (removed afterwards).
 * IMDS unreachable: nothing applied, the node makes its own host keys (like no seed).
 *
 * bash, for /dev/tcp (the image has no HTTP client); each request runs under `timeout`. For the
 * unit tests: KUBEDOS_DMI_DIR (instead of /sys/class/dmi/id), KUBEDOS_IMDS_ADDR and
 * KUBEDOS_IMDS_PORT (instead of 169.254.169.254:80), KUBEDOS_IMDS_NO_LINK=1 (leave the network
 * alone), plus the NoCloud reader's KUBEDOS_ROOT.
 */

import { bashHttpClient } from './bash-http';

/** Path of the reader: a metadata.d hook of kubedos-firstboot, after the NoCloud and MMDS ones. */
export const EC2_READER_PATH = '/usr/lib/kubedos/metadata.d/30-ec2';

/** What Nitro instances report as DMI system vendor. */
export const EC2_SYS_VENDOR = 'Amazon EC2';

/** The guest's temporary address when no DHCP lease came (link-local, removed afterwards). */
export const EC2_FALLBACK_ADDRESS = '169.254.169.1/16';

// The script is a plain template literal: \${ and \\ are bash's, ${…} are TypeScript's.

export const EC2_READER = `#!/bin/bash
# KubeDos EC2 reader (metadata.d hook of kubedos-firstboot; runs before sshd). Fetches the node's
# NoCloud user-data from EC2's instance metadata service with IMDSv2 (token first) and applies it
# with the NoCloud reader. Only on EC2 (DMI sys_vendor). See src/foundry/ec2-reader.ts.
set -euo pipefail
addr=\${KUBEDOS_IMDS_ADDR:-169.254.169.254}
port=\${KUBEDOS_IMDS_PORT:-80}

# One HTTP/1.1 request on /dev/tcp: METHOD PATH OUT [HEADER...]. The body goes to OUT; the exit
# status is 0 for 200, 4 for 404, 1 otherwise. Run under timeout by the caller.
${bashHttpClient({
  tag: 'ec2',
  params: ['method', 'path', 'out'],
  host: 'addr',
  method: '$method',
  headers: [['Host: %s', '"$addr"'], ['Accept: */*'], ['Connection: close'], ['Content-Length: 0']],
  headerArgs: true,
})}

vendor=$(cat "\${KUBEDOS_DMI_DIR:-/sys/class/dmi/id}/sys_vendor" 2>/dev/null || true)
[ "$vendor" = "${EC2_SYS_VENDOR}" ] || exit 0

say() { echo "kubedos: ec2: $*"; }
fail() { echo "kubedos: ec2: error: $*"; exit 1; }
# An image that carries cloud-init (not disabled) reads IMDS with it: one reader per boot.
if [ -x "\${KUBEDOS_ROOT:-}/usr/bin/cloud-init" ] && [ ! -e "\${KUBEDOS_ROOT:-}/etc/cloud/cloud-init.disabled" ]; then
  say "cloud-init is installed: it reads the user-data"
  exit 0
fi
[[ $addr =~ ^[0-9]{1,3}(\\.[0-9]{1,3}){3}$ ]] || fail "KUBEDOS_IMDS_ADDR=$addr is not an IPv4 address"

here=$(cd "$(dirname "$0")" && pwd)
umask 077
work=$(mktemp -d "\${TMPDIR:-/run}/kubedos-ec2.XXXXXX")
added="" iface=""
cleanup() {
  if [ -n "$added" ]; then ip addr del "$added" dev "$iface" 2>/dev/null || true; fi
  # The user-data holds the node's private host key: no copy outlives first boot.
  rm -rf "$work"
}
trap cleanup EXIT

has_ipv4() { [ -n "$(ip -4 -o addr show dev "$iface" scope global 2>/dev/null)" ]; }

if [ "\${KUBEDOS_IMDS_NO_LINK:-}" != 1 ]; then
  how="its address"
  # A NIC that has an address already (systemd-networkd may have been quicker) is used as it is:
  # it is named and configured, no need to wait for udev.
  for dev in /sys/class/net/*; do
    name=\${dev##*/}
    if [ "$name" != lo ] && [ -n "$(ip -4 -o addr show dev "$name" scope global 2>/dev/null)" ]; then iface=$name; break; fi
  done
  if [ -z "$iface" ]; then
    # Interfaces are named (and maybe renamed) by udev: let it finish first.
    if command -v udevadm > /dev/null; then udevadm settle --timeout=15 || true; fi
    for dev in /sys/class/net/*; do
      name=\${dev##*/}
      if [ "$name" != lo ]; then iface=$name; break; fi
    done
    [ -n "$iface" ] || fail "no network interface to reach IMDS on"
    ip link set dev "$iface" up
    if ! has_ipv4 && command -v systemctl > /dev/null; then
      # The image's own DHCP (systemd-networkd), started early; it would start anyway.
      how="a DHCP lease"
      systemctl start --no-block systemd-networkd.service 2> /dev/null || true
      for _ in $(seq 1 40); do has_ipv4 && break; sleep 0.5; done
    fi
    if ! has_ipv4; then
      how="a link-local address"
      if ip addr add ${EC2_FALLBACK_ADDRESS} dev "$iface" 2>/dev/null; then added=${EC2_FALLBACK_ADDRESS}; fi
      ip route replace "$addr/32" dev "$iface"
    fi
  fi
  say "asking IMDS at $addr on $iface with $how (\${SECONDS}s)"
fi

request() { timeout 5 "$0" --request "$@"; }

# A session token (IMDSv2 only: no token, no metadata), retried while the link comes up.
token=""
for attempt in 1 2 3 4 5; do
  if request PUT /latest/api/token "$work/token" 'X-aws-ec2-metadata-token-ttl-seconds: 60'; then token=$(cat "$work/token"); break; fi
  sleep 1
done
if [ -z "$token" ]; then say "IMDS at $addr did not give a token: no metadata applied"; exit 0; fi
[[ $token =~ ^[A-Za-z0-9+/=._-]+$ ]] || fail "IMDS sent a token with unexpected characters"
auth="X-aws-ec2-metadata-token: $token"

# A read with the token, retried (IMDS throttles bursts; a slow answer times out): 0, 4 (404) or 1.
get() {
  local rc=1
  for _ in 1 2 3 4 5; do
    rc=0
    request GET "$1" "$2" "$auth" || rc=$?
    if [ "$rc" = 0 ] || [ "$rc" = 4 ]; then return "$rc"; fi
    sleep 1
  done
  return "$rc"
}

get /latest/meta-data/instance-id "$work/instance-id" || fail "cannot read the instance id from IMDS"
iid=$(cat "$work/instance-id")
[[ $iid =~ ^i-[0-9a-f]{8,17}$ ]] || fail "IMDS gave an unexpected instance id"
ipv4=""
if get /latest/meta-data/local-ipv4 "$work/local-ipv4"; then ipv4=$(cat "$work/local-ipv4"); fi
[[ -z $ipv4 || $ipv4 =~ ^[0-9]{1,3}(\\.[0-9]{1,3}){3}$ ]] || fail "IMDS gave an unexpected local-ipv4"
mkdir "$work/seed"
printf "instance-id: '%s'\\n" "$iid" > "$work/seed/meta-data"
rc=0
get /latest/user-data "$work/seed/user-data" || rc=$?
if [ "$rc" = 4 ]; then rm -f "$work/seed/user-data"; elif [ "$rc" != 0 ]; then fail "cannot read /latest/user-data from IMDS"; fi
say "instance $iid\${ipv4:+ at $ipv4}: read meta-data$([ -f "$work/seed/user-data" ] && echo ' and user-data') (\${SECONDS}s)"

KUBEDOS_CIDATA_DIR=$work/seed "$here/10-nocloud"
`;
