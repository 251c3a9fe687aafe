/**
 * The payload: everything an image adds on top of its rootfs layer, rendered as a flat list of
 * entries (directories, files, symlinks) that ext4.ts writes into a copy of the layer's
 * filesystem with debugfs. Besides the plan's own files, units and scripts it carries:
 *
 * - `kubedos-firstboot.service`: runs once, before sshd. It is THE hook for deploy-time identity:
 *   executables in /usr/lib/kubedos/metadata.d (e.g. a NoCloud cidata / MMDS reader added later)
 *   run first; then SSH host keys are generated (`ssh-keygen -A`; keys already supplied by the
 *   metadata are kept) and their fingerprints printed on the console as `kubedos: hostkey …`;
 *   then the plan's first-boot scripts (/usr/lib/kubedos/firstboot.d) run in order.
 * - an ssh.service drop-in that resets ExecStartPre (Debian's `sshd -t` fails without host keys)
 *   and generates missing keys before the test, so sshd starts even if first boot was skipped.
 * - `kubedos-ready.service`: prints `kubedos: ready <hostname>` on the console once
 *   multi-user.target is reached.
 * - hostname, hosts, fstab, sshd policy (no passwords unless the plan allows them), root's
 *   authorized_keys, /etc/kubedos/image.json.
 * The machine-id stays empty (systemd generates it at first boot).
 */
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
for hook in /usr/lib/kubedos/metadata.d/*; do
  if [ -x "$hook" ]; then say "metadata $hook"; "$hook"; fi
done
ssh-keygen -A >/dev/null
for pub in /etc/ssh/ssh_host_*_key.pub; do
  if [ -f "$pub" ]; then say "hostkey $(ssh-keygen -l -f "$pub")"; fi
done
for script in /usr/lib/kubedos/firstboot.d/*; do
  if [ -x "$script" ]; then say "firstboot $(basename "$script")"; "$script"; fi
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
`;

const READY_UNIT = `[Unit]
Description=KubeDos readiness report on the console
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/lib/kubedos/ready
StandardOutput=journal

[Install]
WantedBy=multi-user.target
`;

const SSH_HOSTKEYS_DROPIN = `# Host keys are not in the image: generate missing ones before sshd's config test.
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
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
    file(
      '/etc/kubedos/image.json',
      `${JSON.stringify({ name: img.name, role: img.role, inputDigest: ids.inputDigest, sourceDateEpoch: plan.sourceDateEpoch }, null, 2)}\n`,
    ),
    { kind: 'dir', path: '/usr/lib/kubedos/metadata.d', mode: 0o755, owner: 'root:root' },
    { kind: 'dir', path: '/usr/lib/kubedos/firstboot.d', mode: 0o755, owner: 'root:root' },
    file('/usr/lib/kubedos/firstboot', FIRSTBOOT_SCRIPT, 0o755),
    file('/usr/lib/kubedos/ready', READY_SCRIPT, 0o755),
    ...unitEntries('kubedos-firstboot.service', FIRSTBOOT_UNIT, true),
    ...unitEntries('kubedos-ready.service', READY_UNIT, true),
  ];
  img.firstBoot.forEach((s, i) => out.push(file(`/usr/lib/kubedos/firstboot.d/${String(i + 1).padStart(2, '0')}-${s.name}`, s.script, 0o755)));
  out.push({ kind: 'dir', path: '/root/.ssh', mode: 0o700, owner: 'root:root' });
  out.push(file('/root/.ssh/authorized_keys', img.authorizedKeys.map((k) => `${k.trim()}\n`).join(''), 0o600));
  for (const u of img.units) out.push(...unitEntries(u.name, u.content, u.enable));
  for (const f of img.files) out.push(file(f.path, f.content, f.mode, f.owner));
  return out;
}
