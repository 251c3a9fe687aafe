/**
 * The payload: everything an image adds on top of its rootfs layer, rendered as a flat list of
 * entries (directories, files, symlinks) that ext4.ts writes into a copy of the layer's
 * filesystem with debugfs. Besides the plan's own files, units and scripts it carries:
 *
 * - `kubedos-firstboot.service`: runs once, before sshd. It is THE hook for deploy-time identity:
 *   executables in /usr/lib/kubedos/metadata.d run first — the NoCloud reader
 *   (nocloud-reader.ts: hostname, host keys, authorized keys, machine-id from a `cidata` seed) and
 *   the MMDS reader (mmds-reader.ts: the same documents from Firecracker's MMDS) and the
 *   guestinfo reader (guestinfo-reader.ts: the same from VMware guestinfo) are three; then, only when no metadata supplied host keys, they are generated (`ssh-keygen -A`);
 *   their fingerprints are printed on the console as `kubedos: hostkey …`; then the plan's
 *   first-boot scripts (/usr/lib/kubedos/firstboot.d) run in order.
 * - an ssh.service drop-in that resets ExecStartPre (Debian's `sshd -t` fails without host keys)
 *   and generates keys when there are none, so sshd starts even if first boot was skipped.
 * - `kubedos-ready.service`: prints `kubedos: ready <hostname>` on the console once
 *   multi-user.target is reached — and only after first boot succeeded, so a ready node always
 *   carries the identity its metadata gave it; then runs the platform reporters in
 *   /usr/lib/kubedos/ready.d with the hostname (guestinfo-reader.ts: `guestinfo.kubedos.ready`
 *   on VMware), each of which decides whether it applies.
 * - networking: systemd-networkd enabled with DHCP on every wired NIC (a plan's own
 *   /etc/systemd/network files sorting earlier take precedence), so a node is reachable (SSH health
 *   checks, forwarded ports) without any per-node configuration; systemd-network-generator turns
 *   `ip=` kernel arguments (static addresses a deploy target hands out) into networkd files.
 * - `overlay-init` (overlay-init.ts): with `init=` it makes the root an overlay of the read-only
 *   image and the node's own disk (how Firecracker microVMs share one rootfs).
 * - hostname, hosts, fstab, sshd policy (no passwords unless the plan allows them), root's
 *   authorized_keys, /etc/kubedos/image.json.
 * The machine-id stays empty: systemd makes one at first boot (from the VM's SMBIOS UUID when the
 * hypervisor sets one, as the QEMU driver does with the Foundry's machine-id), and the NoCloud
 * reader writes the seed's.
 */
import { EC2_READER, EC2_READER_PATH } from './ec2-reader';
import { GUESTINFO_READER, GUESTINFO_READER_PATH, GUESTINFO_READY, GUESTINFO_READY_PATH } from './guestinfo-reader';
import { AZURE_READER, AZURE_READER_PATH } from './azure-reader';
import { GCE_READER, GCE_READER_PATH } from './gce-reader';
import { MMDS_READER, MMDS_READER_PATH } from './mmds-reader';
import { NOCLOUD_AWK, NOCLOUD_AWK_PATH, NOCLOUD_READER, NOCLOUD_READER_PATH } from './nocloud-reader';
import { NOCLOUD_NET_READER, NOCLOUD_NET_READER_PATH } from './nocloud-net-reader';
import { OVERLAY_INIT, OVERLAY_INIT_PATH } from './overlay-init';
import type { BuildPlan } from './plan';

export type PayloadEntry =
  | { kind: 'dir'; path: string; mode: number; owner: string }
  | { kind: 'file'; path: string; mode: number; owner: string; content: Buffer }
  | { kind: 'symlink'; path: string; target: string };

export interface PayloadIds {
  inputDigest: string;
  /** UUID of the root ext4 (fstab; the UKI's command line uses the same). */
  rootFsUuid: string;
}

const SYSTEMD_DIR = '/etc/systemd/system';

const FIRSTBOOT_SCRIPT = `#!/bin/sh
# KubeDos first boot: runs once, before sshd (kubedos-firstboot.service).
set -eu
say() { echo "kubedos: $*"; }
# Deploy-time identity (hostname, host keys, authorized keys) from standard metadata
# (NoCloud cidata, MMDS, provider metadata) is applied by readers installed here.
# Every reader applies what it found through the NoCloud reader, which then leaves
# /var/lib/kubedos/identity-applied: the readers after it (other platforms' probes) are skipped.
rm -f /var/lib/kubedos/identity-applied
for hook in /usr/lib/kubedos/metadata.d/*; do
  if [ -x "$hook" ]; then say "metadata $hook"; "$hook"; fi
  if [ -f /var/lib/kubedos/identity-applied ]; then say "identity applied by \${hook##*/}: the other readers are skipped"; break; fi
done
/usr/lib/kubedos/hostkeys
for pub in /etc/ssh/ssh_host_*_key.pub; do
  if [ -f "$pub" ]; then say "hostkey $(ssh-keygen -l -f "$pub")"; fi
done
for script in /usr/lib/kubedos/firstboot.d/*; do
  if [ -x "$script" ]; then say "firstboot \${script##*/}"; "$script"; fi
done
mkdir -p /var/lib/kubedos
touch /var/lib/kubedos/firstboot.done
say "firstboot done"
`;

const FIRSTBOOT_UNIT = `[Unit]
Description=KubeDos first boot: identity, SSH host keys, first-boot scripts
DefaultDependencies=no
Wants=local-fs.target
After=local-fs.target systemd-remount-fs.service systemd-machine-id-commit.service
Before=ssh.service sshd.service multi-user.target shutdown.target
Conflicts=shutdown.target
ConditionPathExists=!/var/lib/kubedos/firstboot.done

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/lib/kubedos/firstboot
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
`;

const READY_SCRIPT = `#!/bin/sh
# Written raw to the console (no journal prefix), on a line of its own.
line="kubedos: ready $(uname -n)"
printf '\\r\\n%s\\r\\n' "$line" > /dev/console
echo "$line"
# Platform reporters (guestinfo on VMware, …): each decides whether it applies.
for hook in /usr/lib/kubedos/ready.d/*; do
  if [ -x "$hook" ]; then "$hook" "$(uname -n)" || echo "kubedos: ready hook $hook failed"; fi
done
`;

const READY_UNIT = `[Unit]
Description=KubeDos readiness report on the console
After=multi-user.target kubedos-firstboot.service
Requires=kubedos-firstboot.service

[Service]
Type=oneshot
ExecStart=/usr/lib/kubedos/ready
StandardOutput=journal

[Install]
WantedBy=multi-user.target
`;

/** Generates host keys only when there are none: keys from metadata stay the only ones (no unpinned extras). */
const HOSTKEYS_SCRIPT = `#!/bin/sh
# SSH host keys are not in the image: make them at first boot unless metadata supplied some.
for key in /etc/ssh/ssh_host_*_key; do
  if [ -f "$key" ]; then exit 0; fi
done
exec ssh-keygen -A
`;

const SSH_HOSTKEYS_DROPIN = `# Host keys are not in the image: make them (unless metadata supplied some) before sshd's config test.
[Service]
ExecStartPre=
ExecStartPre=/usr/lib/kubedos/hostkeys
ExecStartPre=/usr/sbin/sshd -t
`;

const DHCP_NETWORK = `# KubeDos default: DHCP on every wired NIC. A plan's own .network file sorting earlier wins.
[Match]
Name=en* eth*

[Network]
DHCP=yes
`;

/** `WantedBy=`/`RequiredBy=` targets of a unit's [Install] section. */
export function installTargets(unit: string): { wants: string[]; requires: string[] } {
  const wants: string[] = [];
  const requires: string[] = [];
  let inInstall = false;
  for (const raw of unit.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('[')) inInstall = line === '[Install]';
    else if (inInstall) {
      const m = /^(WantedBy|RequiredBy)\s*=\s*(.*)$/.exec(line);
      if (m) (m[1] === 'WantedBy' ? wants : requires).push(...m[2]!.split(/\s+/).filter(Boolean));
    }
  }
  return { wants, requires };
}

function file(path: string, content: string | Buffer, mode = 0o644, owner = 'root:root'): PayloadEntry {
  return { kind: 'file', path, mode, owner, content: Buffer.isBuffer(content) ? content : Buffer.from(content) };
}

function unitEntries(name: string, content: string, enable: boolean): PayloadEntry[] {
  const out: PayloadEntry[] = [file(`${SYSTEMD_DIR}/${name}`, content)];
  if (!enable) return out;
  const { wants, requires } = installTargets(content);
  for (const t of wants) out.push({ kind: 'symlink', path: `${SYSTEMD_DIR}/${t}.wants/${name}`, target: `${SYSTEMD_DIR}/${name}` });
  for (const t of requires) out.push({ kind: 'symlink', path: `${SYSTEMD_DIR}/${t}.requires/${name}`, target: `${SYSTEMD_DIR}/${name}` });
  return out;
}

/**
 * What a cattle node never does, masked (linked to /dev/null): upgrade itself in place (apt's
 * daily timers: drift is a bug, a new image is the upgrade), and the generators of features its
 * sealed disk has no use for — encrypted, integrity and verity volumes, hibernation, offline
 * updates, GPT partition auto-mounting (fstab names the root by UUID) — each of which systemd
 * would otherwise run on every boot (tenths of a second apiece under TCG). A plan's own unit or
 * file of the same name replaces a mask.
 */
export const MASKED_UNITS = ['apt-daily.timer', 'apt-daily-upgrade.timer'] as const;
export const MASKED_GENERATORS = [
  'systemd-cryptsetup-generator', 'systemd-integritysetup-generator', 'systemd-veritysetup-generator',
  'systemd-hibernate-resume-generator', 'systemd-system-update-generator', 'systemd-gpt-auto-generator',
] as const;

function maskEntries(img: BuildPlan['image']): PayloadEntry[] {
  const own = new Set([...img.units.map((u) => `${SYSTEMD_DIR}/${u.name}`), ...img.files.map((f) => f.path)]);
  const mask = (p: string): PayloadEntry[] => (own.has(p) ? [] : [{ kind: 'symlink', path: p, target: '/dev/null' }]);
  return [
    ...MASKED_UNITS.flatMap((u) => mask(`${SYSTEMD_DIR}/${u}`)),
    { kind: 'dir', path: '/etc/systemd/system-generators', mode: 0o755, owner: 'root:root' },
    ...MASKED_GENERATORS.flatMap((g) => mask(`/etc/systemd/system-generators/${g}`)),
  ];
}

/** Render the full payload of an image, in the order it is applied. */
export function renderPayload(plan: BuildPlan, ids: PayloadIds): PayloadEntry[] {
  const img = plan.image;
  const out: PayloadEntry[] = [
    file('/etc/hostname', `${img.hostname}\n`),
    file('/etc/hosts', `127.0.0.1\tlocalhost\n127.0.1.1\t${img.hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n`),
    file('/etc/fstab', `# <file system> <mount point> <type> <options> <dump> <pass>\nUUID=${ids.rootFsUuid} / ext4 defaults,errors=remount-ro 0 1\n`),
    file(
      '/etc/ssh/sshd_config.d/10-kubedos.conf',
      `PermitRootLogin prohibit-password\nPasswordAuthentication ${img.passwordLogin ? 'yes' : 'no'}\nKbdInteractiveAuthentication no\n`,
    ),
    file('/etc/systemd/system/ssh.service.d/10-kubedos-hostkeys.conf', SSH_HOSTKEYS_DROPIN),
    file('/etc/systemd/network/80-kubedos-dhcp.network', DHCP_NETWORK),
    // `systemctl enable systemd-networkd`, as links.
    { kind: 'symlink', path: `${SYSTEMD_DIR}/multi-user.target.wants/systemd-networkd.service`, target: '/lib/systemd/system/systemd-networkd.service' },
    { kind: 'symlink', path: `${SYSTEMD_DIR}/sockets.target.wants/systemd-networkd.socket`, target: '/lib/systemd/system/systemd-networkd.socket' },
    { kind: 'symlink', path: `${SYSTEMD_DIR}/dbus-org.freedesktop.network1.service`, target: '/lib/systemd/system/systemd-networkd.service' },
    // Static addresses given as `ip=` kernel arguments (a Firecracker target's NAT mode) become networkd files.
    { kind: 'symlink', path: `${SYSTEMD_DIR}/sysinit.target.wants/systemd-network-generator.service`, target: '/lib/systemd/system/systemd-network-generator.service' },
    file(
      '/etc/kubedos/image.json',
      `${JSON.stringify({ name: img.name, role: img.role, inputDigest: ids.inputDigest, sourceDateEpoch: plan.sourceDateEpoch }, null, 2)}\n`,
    ),
    { kind: 'dir', path: '/usr/lib/kubedos/metadata.d', mode: 0o755, owner: 'root:root' },
    { kind: 'dir', path: '/usr/lib/kubedos/firstboot.d', mode: 0o755, owner: 'root:root' },
    { kind: 'dir', path: '/usr/lib/kubedos/ready.d', mode: 0o755, owner: 'root:root' },
    file('/usr/lib/kubedos/firstboot', FIRSTBOOT_SCRIPT, 0o755),
    file('/usr/lib/kubedos/hostkeys', HOSTKEYS_SCRIPT, 0o755),
    file(NOCLOUD_AWK_PATH, NOCLOUD_AWK),
    file(NOCLOUD_READER_PATH, NOCLOUD_READER, 0o755),
    file(NOCLOUD_NET_READER_PATH, NOCLOUD_NET_READER, 0o755),
    file(MMDS_READER_PATH, MMDS_READER, 0o755),
    file(EC2_READER_PATH, EC2_READER, 0o755),
    file(GUESTINFO_READER_PATH, GUESTINFO_READER, 0o755),
    file(GUESTINFO_READY_PATH, GUESTINFO_READY, 0o755),
    file(OVERLAY_INIT_PATH, OVERLAY_INIT, 0o755),
    file(AZURE_READER_PATH, AZURE_READER, 0o755),
    file(GCE_READER_PATH, GCE_READER, 0o755),
    file('/usr/lib/kubedos/ready', READY_SCRIPT, 0o755),
    ...unitEntries('kubedos-firstboot.service', FIRSTBOOT_UNIT, true),
    ...unitEntries('kubedos-ready.service', READY_UNIT, true),
    ...maskEntries(img),
  ];
  img.firstBoot.forEach((s, i) => out.push(file(`/usr/lib/kubedos/firstboot.d/${String(i + 1).padStart(2, '0')}-${s.name}`, s.script, 0o755)));
  out.push({ kind: 'dir', path: '/root/.ssh', mode: 0o700, owner: 'root:root' });
  out.push(file('/root/.ssh/authorized_keys', img.authorizedKeys.map((k) => `${k.trim()}\n`).join(''), 0o600));
  for (const u of img.units) out.push(...unitEntries(u.name, u.content, u.enable));
  for (const f of img.files) out.push(file(f.path, f.content, f.mode, f.owner));
  return out;
}
