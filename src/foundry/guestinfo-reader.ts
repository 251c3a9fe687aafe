/**
 * The image's guestinfo reader: deploy-time identity on VMware (vSphere, ESXi), where a node's
 * metadata travels in its VM's configuration as `guestinfo.*` keys — the transport cloud-init's
 * VMware datasource reads. The vSphere driver sets, per node:
 *
 *   guestinfo.metadata            the NoCloud meta-data (instance-id, local-hostname)
 *   guestinfo.metadata.encoding   base64 (also understood: gzip+base64, gz+b64, b64, none)
 *   guestinfo.userdata            the NoCloud #cloud-config user-data (host key, keys, machine-id)
 *   guestinfo.userdata.encoding   base64
 *
 * The reader gets them with open-vm-tools' `vmware-rpctool "info-get guestinfo.<key>"`, decodes
 * them and hands them to the NoCloud reader (KUBEDOS_CIDATA_DIR), so one parser and one set of
 * rules apply whatever carried the identity; the documents are the standard ones
 * (src/targets/nocloud.ts), so a stock cloud-init image with open-vm-tools reads the same keys.
 *
 * It runs only on VMware: the DMI system vendor or product name says "VMware" (as systemd's
 * detect-virt and cloud-init's ds-identify see it); anywhere else it exits at once, quietly. On
 * VMware without vmware-rpctool (open-vm-tools not installed) or without guestinfo.metadata it
 * applies nothing (the node then makes its own host keys, as with no seed).
 *
 * The second script is a `ready.d` hook of the readiness unit: on VMware it sets
 * `guestinfo.kubedos.ready` to the node's hostname, which is what the driver waits for (and, once
 * it has seen it, the driver removes guestinfo.userdata — the private host key — from the VM's
 * configuration: the guest's own `info-set` would not reach the stored .vmx).
 *
 * POSIX sh. For the unit tests: KUBEDOS_DMI_DIR (instead of /sys/class/dmi/id), KUBEDOS_RPCTOOL
 * (instead of vmware-rpctool), plus the NoCloud reader's KUBEDOS_ROOT.
 */

/** Path of the reader: a metadata.d hook of kubedos-firstboot, after the NoCloud and MMDS ones. */
export const GUESTINFO_READER_PATH = '/usr/lib/kubedos/metadata.d/30-guestinfo';
/** Path of the readiness reporter: a ready.d hook of kubedos-ready. */
export const GUESTINFO_READY_PATH = '/usr/lib/kubedos/ready.d/30-guestinfo';
/** The guestinfo key a ready node sets to its hostname. */
export const GUESTINFO_READY_KEY = 'guestinfo.kubedos.ready';

/** Both scripts start by asking whether this is a VMware guest that can talk to its VMX. */
const ON_VMWARE = `dmi=\${KUBEDOS_DMI_DIR:-/sys/class/dmi/id}
rpctool=\${KUBEDOS_RPCTOOL:-vmware-rpctool}
platform=""
for field in sys_vendor product_name; do
  if [ -r "$dmi/$field" ]; then platform="$platform $(cat "$dmi/$field")"; fi
done
case $platform in
  *VMware*) ;;
  *) exit 0 ;;
esac
if ! command -v "$rpctool" > /dev/null 2>&1; then
  say "a VMware guest without $rpctool (install open-vm-tools): $without"
  exit 0
fi`;

// Plain template literals: \${ and \\ are the shell's, ${…} are TypeScript's.

export const GUESTINFO_READER = `#!/bin/sh
# KubeDos guestinfo reader (metadata.d hook of kubedos-firstboot; runs before sshd). On VMware only:
# reads the node's NoCloud meta-data and user-data from guestinfo.metadata / guestinfo.userdata
# (+ .encoding) with vmware-rpctool and applies them with the NoCloud reader.
# See src/foundry/guestinfo-reader.ts.
set -eu
say() { echo "kubedos: guestinfo: $*"; }
fail() { echo "kubedos: guestinfo: error: $*"; exit 1; }
without="no metadata applied"
${ON_VMWARE}

here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "\${TMPDIR:-/run}/kubedos-guestinfo.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/seed"

# get KEY FILE: the value of guestinfo.KEY into FILE; non-zero when the key has no value.
get() { "$rpctool" "info-get guestinfo.$1" > "$2" 2> /dev/null; }

# fetch KEY FILE: guestinfo.KEY, decoded by guestinfo.KEY.encoding, into FILE.
fetch() {
  get "$1" "$work/$1.raw" || return 1
  encoding=""
  if get "$1.encoding" "$work/$1.encoding"; then encoding=$(tr -d ' \\t\\r\\n' < "$work/$1.encoding"); fi
  case $encoding in
    "") cat "$work/$1.raw" > "$2" ;;
    base64 | b64) base64 -d "$work/$1.raw" > "$2" || fail "guestinfo.$1 is not valid base64" ;;
    gzip+base64 | gz+b64) base64 -d "$work/$1.raw" | gzip -dc > "$2" || fail "guestinfo.$1 is not valid gzip+base64" ;;
    *) fail "guestinfo.$1.encoding '$encoding' is not supported (base64, gzip+base64)" ;;
  esac
}

if ! fetch metadata "$work/seed/meta-data"; then say "no guestinfo.metadata: $without"; exit 0; fi
# cloud-init marks a cleared key with an empty YAML document.
if ! grep -q '[^[:space:]-]' "$work/seed/meta-data"; then say "guestinfo.metadata is empty: $without"; exit 0; fi
case $(sed -n '/[^[:space:]]/{s/^[[:space:]]*//p;q;}' "$work/seed/meta-data") in
  "{"*) say "guestinfo.metadata is JSON; this reader applies the NoCloud (YAML) form: $without"; exit 0 ;;
esac
if ! fetch userdata "$work/seed/user-data"; then rm -f "$work/seed/user-data"; fi
say "read guestinfo.metadata$([ -f "$work/seed/user-data" ] && echo ' and guestinfo.userdata')"

KUBEDOS_CIDATA_DIR=$work/seed "$here/10-nocloud"
`;

export const GUESTINFO_READY = `#!/bin/sh
# KubeDos readiness on VMware (ready.d hook of kubedos-ready): sets ${GUESTINFO_READY_KEY} to the
# hostname given as \\$1, which the vSphere driver waits for. See src/foundry/guestinfo-reader.ts.
set -eu
say() { echo "kubedos: guestinfo: $*"; }
without="readiness not reported through guestinfo"
${ON_VMWARE}

host=\${1:-$(uname -n)}
"$rpctool" "info-set ${GUESTINFO_READY_KEY} $host" || { say "info-set ${GUESTINFO_READY_KEY} failed (is isolation.tools.setinfo.disable set on the VM?)"; exit 1; }
say "ready reported as ${GUESTINFO_READY_KEY}=$host"
`;
