/**
 * The image's GCE reader: deploy-time identity on Compute Engine instances, from the metadata
 * server (http://169.254.169.254, `Metadata-Flavor: Google` both ways). The instance's
 * `user-data` attribute is the node's NoCloud `#cloud-config` (src/targets/gcp/driver.ts; the
 * key cloud-init's GCE datasource reads too); the reader writes the meta-data cloud-init would
 * derive (instance-id: `instance/id`; local-hostname: `instance/hostname`) and hands both to the
 * NoCloud reader, so one parser and one set of rules apply.
 *
 * First boot runs before networking, and the metadata server answers only an instance that has
 * its address: the reader starts systemd-networkd (enabled in every image anyway, DHCP on every
 * wired NIC) without waiting for it, then asks until the server answers (bounded: 90 s). An
 * instance whose metadata has no user-data gets nothing applied (the node makes its own keys).
 *
 * It runs only on Compute Engine: DMI product name "Google Compute Engine" (or vendor Google),
 * what cloud-init's ds-identify checks, so no other substrate ever waits on it. For the unit
 * tests: KUBEDOS_DMI_DIR, KUBEDOS_GCE_METADATA (host, default 169.254.169.254),
 * KUBEDOS_GCE_METADATA_PORT, KUBEDOS_GCE_NO_LINK=1 (leave the network alone), plus the NoCloud
 * reader's KUBEDOS_ROOT.
 */

import { bashHttpClient } from './bash-http';

/** Path of the reader: a metadata.d hook of kubedos-firstboot, after the Azure one. */
export const GCE_READER_PATH = '/usr/lib/kubedos/metadata.d/40-gce';

/** DMI product name of every Compute Engine instance. */
export const GCE_PRODUCT_NAME = 'Google Compute Engine';

// The script is a plain template literal: \${ and \\ are bash's, ${…} are TypeScript's.

export const GCE_READER = `#!/bin/bash
# KubeDos GCE reader (metadata.d hook of kubedos-firstboot; runs before sshd). On Compute Engine
# only (DMI): fetches the instance's user-data from the metadata server and applies it with the
# NoCloud reader. See src/foundry/gce-reader.ts.
set -euo pipefail
addr=\${KUBEDOS_GCE_METADATA:-169.254.169.254}
port=\${KUBEDOS_GCE_METADATA_PORT:-80}
say() { echo "kubedos: gce: $*"; }
fail() { echo "kubedos: gce: error: $*"; exit 1; }

# One HTTP/1.1 GET on /dev/tcp: PATH OUT. The body goes to OUT; the exit status is 0 for 200 from
# the metadata server (it must say Metadata-Flavor: Google), 4 for 404, 1 otherwise.
${bashHttpClient({
  tag: 'gce',
  params: ['path', 'out'],
  host: 'addr',
  method: 'GET',
  headers: [['Host: metadata.google.internal'], ['Metadata-Flavor: Google'], ['Connection: close']],
  untilClose: true,
  require: {
    header: 'Metadata-Flavor',
    variable: 'flavor',
    value: 'Google',
    message: "$path: the answer is not the metadata server's (no Metadata-Flavor: Google)",
  },
})}

dmi=\${KUBEDOS_DMI_DIR:-/sys/class/dmi/id}
product=$(cat "$dmi/product_name" 2>/dev/null || true)
vendor=$(cat "$dmi/sys_vendor" 2>/dev/null || true)
[ "$product" = "${GCE_PRODUCT_NAME}" ] || [ "$vendor" = Google ] || exit 0

here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "\${TMPDIR:-/run}/kubedos-gce.XXXXXX")
trap 'rm -rf "$work"' EXIT
request() { timeout 5 "$0" --request "$@"; }

if [ "\${KUBEDOS_GCE_NO_LINK:-}" != 1 ]; then
  # The metadata server answers the instance's own address: DHCP first (networkd is enabled anyway).
  systemctl start --no-block systemd-networkd.service || true
fi

# The metadata server, retried while the network comes up.
deadline=$(( $(date +%s) + \${KUBEDOS_GCE_WAIT_SECONDS:-90} ))
until request /computeMetadata/v1/instance/id "$work/id" 2>/dev/null; do
  if [ "$(date +%s)" -ge "$deadline" ]; then say "the metadata server at $addr did not answer: no metadata applied"; exit 0; fi
  sleep 1
done
id=$(cat "$work/id")
[[ $id =~ ^[0-9]{1,20}$ ]] || fail "the metadata server sent an instance id that is not a number"
host=""
if request /computeMetadata/v1/instance/hostname "$work/hostname"; then host=$(cat "$work/hostname"); fi
rc=0
request /computeMetadata/v1/instance/attributes/user-data "$work/user-data" || rc=$?
if [ "$rc" = 4 ]; then say "the instance has no user-data: no metadata applied"; exit 0; fi
[ "$rc" = 0 ] || fail "cannot read instance/attributes/user-data from the metadata server"
{
  echo "instance-id: '$id'"
  if [[ $host =~ ^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$ ]]; then echo "local-hostname: '$host'"; fi
} > "$work/meta-data"
say "read user-data of instance $id"
KUBEDOS_CIDATA_DIR=$work "$here/10-nocloud"
`;
