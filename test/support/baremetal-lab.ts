/**
 * A rack of "real machines in software" for the bare-metal target: QEMU machines (UEFI, TCG, a
 * blank disk, a NIC) managed by a private libvirtd, behind OpenStack's Redfish emulator
 * (sushy-tools, libvirt driver) as their BMC, all inside a network namespace the lab creates:
 *
 *   host (the worker, its boot server)        network namespace kdbm-<id>
 *   ─────────────────────────────────         ──────────────────────────────────────────────────
 *   veth <hostIp>/30  ─────────────────────── veth <bmcIp>/30: sushy-emulator (https, basic auth)
 *   route <lab>/24 via <bmcIp>                 bridge <lab>.1/24: libvirt's network, dnsmasq
 *                                              (DHCP reservations for the machines, and the boot
 *                                              server's /ipxe for iPXE: the operator's DHCP)
 *                                              machines m1..mN (libvirtd, QEMU/TCG)
 *
 * libvirtd runs in its own mount and PID namespaces too: private /etc/libvirt, /run/libvirt,
 * /var/lib/libvirt (nothing of the host's is read or written), its socket reached from the host
 * at <dir>/libvirt/run/libvirt-sock; as PID 1 of that namespace a shell reaps the orphans libvirt
 * leaves (dnsmasq's daemonising parent), and when the lab stops everything inside dies with it.
 * Found on this machine: the storage pool `default` must exist (sushy uploads media into it);
 * sushy caches its libvirt connection, so it starts after libvirtd; stdio_handler=file keeps
 * virtlogd out.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { makeCert, startSushy, type Cert, type Sushy } from './sushy';

export interface LabMachine {
  name: string;
  /** libvirt domain name and Redfish system id (its UUID). */
  domain: string;
  uuid: string;
  mac: string;
  address: string;
  disk: string;
  /** Its serial console, every boot appended (what it installed, and how often, is in there). */
  serialLog: string;
}

export interface Lab {
  netns: string;
  /** The host's end of the veth: where the worker's boot server listens. */
  hostIp: string;
  /** The namespace's end: the BMC (sushy). */
  bmcIp: string;
  bmcUrl: string;
  cert: Cert;
  user: string;
  password: string;
  sushy: Sushy;
  machines: LabMachine[];
  virsh(args: string[]): string;
  /** The machine's disk as the host sees it: its first bytes (a GPT once installed). */
  diskHead(m: LabMachine, bytes?: number): Promise<Buffer>;
  stop(): Promise<void>;
}

export interface LabOptions {
  dir: string;
  machines: number;
  memoryMiB: number;
  diskBytes: number;
  /** Port of the boot server the network's DHCP hands iPXE clients (`http://<hostIp>:<port>/ipxe`). */
  bootPort: number;
}

const INIT = `set -e
L=$1
mount -t tmpfs -o mode=0755 kubedos-lab /run
mkdir -p /run/libvirt
mount --bind "$L/etc" /etc/libvirt
mount --bind "$L/run" /run/libvirt
mount --bind "$L/lib" /var/lib/libvirt
mount --bind "$L/cache" /var/cache/libvirt
mount --bind "$L/log" /var/log/libvirt
libvirtd &
wait $!
`;

const LIBVIRTD_CONF = `unix_sock_group = "root"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
`;

const QEMU_CONF = `user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = [ ]
cgroup_controllers = [ ]
stdio_handler = "file"
`;

function run(argv: string[]): string {
  return execFileSync(argv[0]!, argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Two free /24s under 10.0.0.0/8 that nothing on this host routes or holds yet (other labs run here too). */
function freeSubnets(): { veth: string; lab: string } {
  const used = run(['ip', '-4', '-o', 'route']) + run(['ip', '-4', '-o', 'addr']);
  for (;;) {
    const a = 100 + Math.floor(Math.random() * 100);
    const b = Math.floor(Math.random() * 254);
    const veth = `10.${a}.${b}`;
    const lab = `10.${a}.${b + 1}`;
    if (b + 1 > 254 || used.includes(`10.${a}.`)) continue;
    return { veth, lab };
  }
}

function domainXml(m: LabMachine, network: string, memoryMiB: number, vars: string): string {
  return `<domain type='qemu'>
  <name>${m.domain}</name>
  <uuid>${m.uuid}</uuid>
  <memory unit='MiB'>${memoryMiB}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>
    <nvram>${vars}</nvram>
    <bios useserial='yes'/>
  </os>
  <features><acpi/></features>
  <cpu mode='custom'><model>qemu64</model></cpu>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' discard='unmap' detect_zeroes='unmap'/>
      <source file='${m.disk}'/>
      <target dev='vda' bus='virtio'/>
      <boot order='1'/>
    </disk>
    <interface type='network'>
      <source network='${network}'/>
      <mac address='${m.mac}'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'><source path='${m.serialLog}' append='on'/><target port='0'/></serial>
    <video><model type='none'/></video>
  </devices>
</domain>
`;
}

export async function startLab(o: LabOptions): Promise<Lab> {
  const id = randomBytes(3).toString('hex');
  const netns = `kdbm-${id}`;
  const { veth, lab } = freeSubnets();
  const hostIp = `${veth}.1`;
  const bmcIp = `${veth}.2`;
  const hostIf = `kdbmh${id}`;
  const nsIf = `kdbmn${id}`;
  const lv = path.join(o.dir, 'libvirt');
  const socket = path.join(lv, 'run', 'libvirt-sock');
  const uri = `qemu:///system?socket=${socket}`;
  const virsh = (args: string[]) => run(['virsh', '-q', '-c', uri, ...args]);
  let libvirtd: ChildProcess | undefined;
  let sushy: Sushy | undefined;

  const stop = async () => {
    await sushy?.stop().catch(() => undefined);
    if (libvirtd?.pid && libvirtd.exitCode === null) {
      // unshare --kill-child: the namespace's init goes, and everything in it with it.
      libvirtd.kill('SIGKILL');
      await new Promise((r) => libvirtd!.once('exit', r));
    }
    try {
      run(['ip', 'netns', 'del', netns]);
    } catch {
      /* never created */
    }
    try {
      run(['ip', 'link', 'del', hostIf]);
    } catch {
      /* went with the namespace */
    }
  };

  try {
    run(['ip', 'netns', 'add', netns]);
    run(['ip', 'netns', 'exec', netns, 'ip', 'link', 'set', 'lo', 'up']);
    run(['ip', 'link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf]);
    run(['ip', 'link', 'set', nsIf, 'netns', netns]);
    run(['ip', 'addr', 'add', `${hostIp}/30`, 'dev', hostIf]);
    run(['ip', 'link', 'set', hostIf, 'up']);
    run(['ip', 'netns', 'exec', netns, 'ip', 'addr', 'add', `${bmcIp}/30`, 'dev', nsIf]);
    run(['ip', 'netns', 'exec', netns, 'ip', 'link', 'set', nsIf, 'up']);
    run(['ip', 'netns', 'exec', netns, 'sysctl', '-q', 'net.ipv4.ip_forward=1']);
    run(['ip', 'route', 'add', `${lab}.0/24`, 'via', bmcIp, 'dev', hostIf]);

    for (const d of ['etc/qemu/networks', 'etc/storage', 'run', 'lib', 'cache', 'log']) await fs.mkdir(path.join(lv, d), { recursive: true });
    await fs.writeFile(path.join(lv, 'etc', 'libvirtd.conf'), LIBVIRTD_CONF);
    await fs.writeFile(path.join(lv, 'etc', 'qemu.conf'), QEMU_CONF);
    libvirtd = spawn('ip', ['netns', 'exec', netns, 'unshare', '--mount', '--propagation', 'private', '--pid', '--fork', '--kill-child', '--mount-proc', 'sh', '-c', INIT, 'sh', lv], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    libvirtd.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (existsSync(socket)) {
        try {
          virsh(['version']);
          break;
        } catch {
          /* not yet */
        }
      }
      if (libvirtd.exitCode !== null) throw new Error(`libvirtd exited: ${stderr}`);
      if (Date.now() > deadline) throw new Error(`libvirtd did not start: ${stderr}`);
      await sleep(200);
    }

    const pool = path.join(o.dir, 'pool');
    await fs.mkdir(pool, { recursive: true });
    await fs.writeFile(path.join(o.dir, 'pool.xml'), `<pool type='dir'><name>default</name><target><path>${pool}</path></target></pool>\n`);
    virsh(['pool-define', path.join(o.dir, 'pool.xml')]);
    virsh(['pool-start', 'default']);

    const machines: LabMachine[] = [];
    for (let i = 0; i < o.machines; i++) {
      const n = i + 1;
      const hex = randomBytes(2).toString('hex');
      machines.push({
        name: `m${n}`,
        domain: `${netns}-m${n}`,
        uuid: `5ab0c0de-${id.slice(0, 4)}-4000-8000-${id}${String(n).padStart(6, '0')}`,
        mac: `52:54:00:${hex.slice(0, 2)}:${hex.slice(2, 4)}:${n.toString(16).padStart(2, '0')}`,
        address: `${lab}.${10 + n}`,
        disk: path.join(o.dir, `m${n}.disk`),
        serialLog: path.join(o.dir, `m${n}.serial.log`),
      });
    }
    const network = `kdbm${id}`;
    const hosts = machines.map((m) => `<host mac='${m.mac}' ip='${m.address}'/>`).join('');
    await fs.writeFile(
      path.join(o.dir, 'net.xml'),
      `<network><name>${network}</name><forward mode='open'/><bridge name='kdbmb${id}' stp='off'/>` +
        `<ip address='${lab}.1' netmask='255.255.255.0'><dhcp><range start='${lab}.100' end='${lab}.199'/>${hosts}` +
        `<bootp file='http://${hostIp}:${o.bootPort}/ipxe'/></dhcp></ip></network>\n`,
    );
    virsh(['net-define', path.join(o.dir, 'net.xml')]);
    virsh(['net-start', network]);
    for (const m of machines) {
      await fs.writeFile(m.disk, '');
      await fs.truncate(m.disk, o.diskBytes);
      const vars = path.join(o.dir, `${m.name}.vars`);
      await fs.copyFile('/usr/share/OVMF/OVMF_VARS_4M.fd', vars);
      const xml = path.join(o.dir, `${m.name}.xml`);
      await fs.writeFile(xml, domainXml(m, network, o.memoryMiB, vars));
      virsh(['define', xml]);
    }

    const cert = await makeCert(path.join(o.dir, 'pki'), 'lab-bmc', bmcIp);
    const user = 'kubedos';
    const password = randomBytes(12).toString('base64url');
    // After libvirtd: sushy keeps the connection it opens first.
    sushy = await startSushy({ dir: path.join(o.dir, 'sushy'), host: bmcIp, port: 8443, cert, users: [{ user, password }], libvirtUri: uri, netns });
    const started = sushy;
    return {
      netns,
      hostIp,
      bmcIp,
      bmcUrl: started.url,
      cert,
      user,
      password,
      sushy: started,
      machines,
      virsh,
      diskHead: async (m, bytes = 1024) => {
        const fh = await fs.open(m.disk, 'r');
        try {
          const buf = Buffer.alloc(bytes);
          await fh.read(buf, 0, bytes, 0);
          return buf;
        } finally {
          await fh.close();
        }
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
