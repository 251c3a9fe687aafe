/** The quickstart example's worker (examples/quickstart/kubedos.yaml) as a BuildPlan: what bench/build builds and bench/boot boots. */
import type { BuildPlan } from '../src/foundry';

const MIRROR = 'http://deb.debian.org/debian';
const PACKAGES = ['linux-image-amd64', 'systemd-sysv', 'udev', 'openssh-server', 'dbus', 'initramfs-tools', 'zstd', 'iproute2', 'ca-certificates'];
export const MOTD = 'This node was manufactured by KubeDos from the quickstart spec.\nDo not repair it in place: change the spec and replace it.\n';

export function quickstartPlan(motd: string = MOTD, formats: BuildPlan['formats'] = ['raw', 'qcow2']): BuildPlan {
  return {
    base: { suite: 'bookworm', mirror: MIRROR, securityMirror: 'http://deb.debian.org/debian-security', components: ['main'], packages: PACKAGES, architecture: 'amd64' },
    sourceDateEpoch: 1735689600,
    image: {
      name: 'quickstart-worker',
      role: 'worker',
      hostname: 'quickstart-worker',
      files: [{ path: '/etc/kubedos/motd', content: motd, mode: 0o644, owner: 'root:root' }],
      units: [{
        name: 'kubedos-hello.service',
        content: '[Unit]\nDescription=Announce the quickstart worker on the journal and the console\nAfter=multi-user.target\n\n[Service]\nType=oneshot\nStandardOutput=journal+console\nExecStart=/bin/echo "kubedos-hello: quickstart worker is up"\n\n[Install]\nWantedBy=multi-user.target\n',
        enable: true,
      }],
      firstBoot: [{ name: '10-motd', script: '#!/bin/sh\nset -eu\ncp /etc/kubedos/motd /etc/motd\n' }],
      authorizedKeys: [],
      passwordLogin: false,
      diskSizeBytes: 2 * 1024 * 1024 * 1024,
    },
    formats,
  };
}
