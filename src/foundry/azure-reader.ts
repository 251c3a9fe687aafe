/**
 * The image's Azure reader: deploy-time identity on Azure VMs, and the "provisioning complete"
 * report Azure waits for (without it, creating the VM fails with OSProvisioningTimedOut after
 * about 20 minutes). It speaks Azure's own two contracts, as walinuxagent and cloud-init's Azure
 * datasource do, in bash:
 *
 * 1. Identity (first boot, before sshd, no network needed): Azure attaches provisioning media
 *    (a UDF or ISO 9660 CD-ROM) holding `ovf-env.xml`, whose `CustomData` is the VM's custom data
 *    in base64 — for KubeDos nodes the node's NoCloud `#cloud-config` user-data
 *    (src/targets/azure/driver.ts). The reader decodes it, writes the NoCloud meta-data cloud-init
 *    would derive (instance-id: the SMBIOS system UUID; local-hostname: ovf-env's HostName) and
 *    hands both to the NoCloud reader, so one parser and one set of rules apply.
 * 2. Ready (once networking is up): `GET http://168.63.129.16/machine/?comp=goalstate` (WireServer,
 *    `x-ms-version: 2012-11-30`), then `POST /machine/?comp=health` with the goal state's
 *    incarnation, container id and role instance id and `<State>Ready</State>` — the protocol
 *    Microsoft documents for images without a provisioning agent. First boot must not wait for
 *    the network, so this part runs as a transient unit (`systemd-run --no-block`) that retries
 *    until the WireServer answers (bounded: 15 minutes).
 *
 * It runs only on Azure: the DMI chassis asset tag is Azure's (7783-7084-3265-9085-8269-3286-77,
 * what cloud-init's ds-identify checks), so no other substrate ever waits on it. For the unit
 * tests: KUBEDOS_DMI_DIR (instead of /sys/class/dmi/id), KUBEDOS_AZURE_OVF_DIR (a directory holding
 * ovf-env.xml instead of the media), KUBEDOS_AZURE_WIRESERVER / KUBEDOS_AZURE_WIRESERVER_PORT,
 * KUBEDOS_AZURE_REPORT=inline (report in the foreground) or none, plus the NoCloud reader's KUBEDOS_ROOT.
 */

import { bashHttpClient } from './bash-http';

/** Path of the reader: a metadata.d hook of kubedos-firstboot, after the NoCloud and MMDS ones. */
export const AZURE_READER_PATH = '/usr/lib/kubedos/metadata.d/30-azure';

/** DMI chassis asset tag of every Azure VM. */
export const AZURE_CHASSIS_ASSET_TAG = '7783-7084-3265-9085-8269-3286-77';

/** Azure's WireServer (fabric endpoint), the same address in every region. */
export const AZURE_WIRESERVER = '168.63.129.16';

// The script is a plain template literal: \${ and \\ are bash's, ${…} are TypeScript's.

export const AZURE_READER = `#!/bin/bash
# KubeDos Azure reader (metadata.d hook of kubedos-firstboot; runs before sshd). On Azure only
# (DMI chassis asset tag): applies the node's custom data from ovf-env.xml with the NoCloud
# reader, then reports "provisioning complete" to the WireServer. See src/foundry/azure-reader.ts.
set -euo pipefail
wire=\${KUBEDOS_AZURE_WIRESERVER:-${AZURE_WIRESERVER}}
port=\${KUBEDOS_AZURE_WIRESERVER_PORT:-80}
say() { echo "kubedos: azure: $*"; }
fail() { echo "kubedos: azure: error: $*"; exit 1; }

# One HTTP/1.1 request on /dev/tcp: METHOD PATH OUT BODY|- [HEADER...]. The answer's body goes to
# OUT; the exit status is 0 for 200, 1 otherwise. Run under timeout by the caller.
${bashHttpClient({
  tag: 'azure',
  params: ['method', 'path', 'out', 'body'],
  host: 'wire',
  method: '$method',
  headers: [['Host: %s', '"$wire"'], ['Connection: close']],
  headerArgs: true,
  body: true,
  untilClose: true,
  notFound: false,
})}

dmi=\${KUBEDOS_DMI_DIR:-/sys/class/dmi/id}
[ "$(cat "$dmi/chassis_asset_tag" 2>/dev/null || true)" = ${AZURE_CHASSIS_ASSET_TAG} ] || exit 0

# The text of the first <[prefix:]NAME> element of an XML document held on one line.
element() {
  local re="<([A-Za-z0-9_]+:)?$1>([^<]*)</"
  if [[ $2 =~ $re ]]; then printf '%s' "\${BASH_REMATCH[2]}"; fi
}

# --- Ready: tell the WireServer provisioning is complete (a transient unit, once the network is up).
if [ "\${1:-}" = --report-ready ]; then
  work=$(mktemp -d "\${TMPDIR:-/run}/kubedos-azure-ready.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  request() { timeout 10 "$0" --request "$@"; }
  deadline=$(( $(date +%s) + \${KUBEDOS_AZURE_REPORT_SECONDS:-900} ))
  headers=('x-ms-version: 2012-11-30' 'x-ms-agent-name: kubedos')
  while :; do
    if request GET '/machine/?comp=goalstate' "$work/goalstate" - "\${headers[@]}" 2>/dev/null; then
      state=$(tr -d '\\r\\n' < "$work/goalstate")
      incarnation=$(element Incarnation "$state")
      container=$(element ContainerId "$state")
      instance=$(element InstanceId "$state")
      [[ $incarnation =~ ^[0-9]{1,9}$ ]] || fail "the WireServer's goal state has no usable Incarnation"
      [[ $container =~ ^[A-Za-z0-9-]{1,64}$ ]] || fail "the WireServer's goal state has no usable ContainerId"
      [[ $instance =~ ^[A-Za-z0-9._-]{1,128}$ ]] || fail "the WireServer's goal state has no usable InstanceId"
      {
        echo '<?xml version="1.0" encoding="utf-8"?>'
        echo '<Health xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
        echo "  <GoalStateIncarnation>$incarnation</GoalStateIncarnation>"
        echo "  <Container><ContainerId>$container</ContainerId><RoleInstanceList><Role><InstanceId>$instance</InstanceId><Health><State>Ready</State></Health></Role></RoleInstanceList></Container>"
        echo '</Health>'
      } > "$work/health"
      if request POST '/machine/?comp=health' "$work/answer" "$work/health" "\${headers[@]}" 'Content-Type: text/xml;charset=utf-8'; then
        say "reported ready to the WireServer (incarnation $incarnation, container $container, instance $instance)"
        exit 0
      fi
    fi
    [ "$(date +%s)" -lt "$deadline" ] || fail "the WireServer at $wire did not take the ready report; Azure will fail this VM's provisioning"
    sleep "\${KUBEDOS_AZURE_RETRY_SECONDS:-3}"
  done
fi

# --- Identity: ovf-env.xml's CustomData (the node's #cloud-config) through the NoCloud reader.
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "\${TMPDIR:-/run}/kubedos-azure.XXXXXX")
mnt=""
cleanup() {
  if [ -n "$mnt" ]; then umount "$mnt" 2>/dev/null || true; rmdir "$mnt" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

ovf=""
if [ -n "\${KUBEDOS_AZURE_OVF_DIR:-}" ]; then
  ovf=$KUBEDOS_AZURE_OVF_DIR/ovf-env.xml
else
  # The provisioning media is the VM's DVD drive: UDF on Azure, ISO 9660 accepted (as cloud-init
  # does). The drives first; a full blkid probe (slow under TCG) only when they hold none.
  try_media() {
    local dev=$1 m
    [ -b "$dev" ] || return 1
    m=$(mktemp -d /run/kubedos-azure-media.XXXXXX)
    if mount -o ro "$dev" "$m" 2>/dev/null; then
      if [ -f "$m/ovf-env.xml" ]; then mnt=$m; ovf=$m/ovf-env.xml; say "provisioning media on $dev"; return 0; fi
      umount "$m" || true
    fi
    rmdir "$m" || true
    return 1
  }
  try_media /dev/sr0 || try_media /dev/sr1 || for dev in $(blkid -c /dev/null -o device -t TYPE=udf 2>/dev/null || true) $(blkid -c /dev/null -o device -t TYPE=iso9660 2>/dev/null || true); do
    try_media "$dev" && break
  done
fi

if [ -n "$ovf" ] && [ -f "$ovf" ]; then
  env=$(tr -d '\\r\\n' < "$ovf")
  host=$(element HostName "$env")
  custom=$(element CustomData "$env")
  uuid=$(tr 'A-F' 'a-f' < "$dmi/product_uuid" 2>/dev/null || true)
  [[ $uuid =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]] || fail "no usable SMBIOS system UUID in $dmi/product_uuid"
  {
    echo "instance-id: '$uuid'"
    if [[ $host =~ ^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$ ]]; then echo "local-hostname: '$host'"; fi
  } > "$work/meta-data"
  if [ -n "$custom" ]; then
    printf '%s' "$custom" | tr -d ' \\t' | base64 -d > "$work/user-data" 2>/dev/null || fail "ovf-env.xml's CustomData is not base64"
  fi
  say "read ovf-env.xml$([ -s "$work/user-data" ] && echo ' with custom data')"
  KUBEDOS_CIDATA_DIR=$work "$here/10-nocloud"
else
  say "no provisioning media (ovf-env.xml): no metadata applied"
fi

# Report ready once the network is up, without holding up first boot (sshd waits for it).
if [ "\${KUBEDOS_AZURE_REPORT:-}" = inline ]; then
  "$0" --report-ready
elif [ "\${KUBEDOS_AZURE_REPORT:-}" = none ]; then
  say "ready report not sent (KUBEDOS_AZURE_REPORT=none)"
elif systemd-run --no-block --unit=kubedos-azure-ready --description='KubeDos: report provisioning complete to Azure' -p StandardOutput=journal+console -p StandardError=journal+console "$here/$(basename "$0")" --report-ready > /dev/null; then
  say "ready report scheduled (kubedos-azure-ready.service)"
else
  "$0" --report-ready &
  say "ready report started in the background"
fi
`;
