/**
 * DHCP and TFTP for network boot on an isolated provisioning network, when the target spec asks
 * for it (`dhcp:`): one dnsmasq per target, detached (the machines keep their leases while a
 * worker restarts), found again by its pid and command line. It answers only the inventory's
 * machines that a node holds (`--dhcp-host` per machine, everything else ignored), with no DNS;
 * iPXE clients are handed the boot server's entry script, other PXE ROMs first get iPXE over TFTP
 * from Debian's `ipxe` package (ipxe.efi for UEFI, undionly.kpxe for BIOS). The machines are on its
 * command line rather than in a hosts file because dnsmasq reads such files as `nobody`, and the
 * state directory is private; a changed set restarts it (DHCP clients simply ask again).
 *
 * Networks with their own DHCP need these lines instead (see the README):
 *   dhcp-match=set:ipxe,175
 *   dhcp-boot=tag:ipxe,<bootServer.url>/ipxe
 *   …and, for ROMs that are not iPXE, TFTP of ipxe.efi / undionly.kpxe.
 */
import { promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError } from '../../errors';
import { isOurProcess, logTail, processArgv, spawnDaemon, stopProcess } from '../../exec/daemon';
import { logger } from '../../log';

/** Where Debian's `ipxe` package puts the iPXE binaries served over TFTP. */
export const IPXE_TFTP_ROOT = '/usr/lib/ipxe';

export interface DhcpSettings {
  interface: string;
  range: readonly [string, string];
  netmask: string;
  router?: string;
  /** Milliseconds. */
  leaseTime: number;
}

export interface DhcpHost {
  mac: string;
  /** A reservation; without one the host gets an address of the range. */
  address?: string;
}

/** dnsmasq's argv for a target (everything on the command line: no configuration file is read). */
export function dnsmasqArgv(settings: DhcpSettings, hosts: readonly DhcpHost[], files: { leases: string; log: string }, entryUrl: string, tftpRoot = IPXE_TFTP_ROOT): string[] {
  const lease = Math.max(120, Math.round(settings.leaseTime / 1000));
  return [
    'dnsmasq',
    '--keep-in-foreground',
    '--conf-file=/dev/null',
    '--port=0',
    `--interface=${settings.interface}`,
    '--bind-interfaces',
    '--except-interface=lo',
    `--dhcp-range=${settings.range[0]},${settings.range[1]},${settings.netmask},${lease}`,
    ...hosts.map((h) => `--dhcp-host=${h.address ? `${h.mac},${h.address}` : h.mac}`),
    '--dhcp-ignore=tag:!known',
    `--dhcp-leasefile=${files.leases}`,
    '--dhcp-authoritative',
    settings.router ? `--dhcp-option=option:router,${settings.router}` : '--dhcp-option=option:router',
    '--dhcp-option=option:dns-server',
    '--dhcp-match=set:ipxe,175',
    '--dhcp-match=set:efi64,option:client-arch,7',
    '--dhcp-match=set:efi64,option:client-arch,9',
    `--dhcp-boot=tag:ipxe,${entryUrl}`,
    '--dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi',
    '--dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe',
    '--enable-tftp',
    `--tftp-root=${tftpRoot}`,
    '--log-dhcp',
    `--log-facility=${files.log}`,
  ];
}

/** The addresses dnsmasq leased, by MAC (its lease file: `expiry mac ip hostname client-id`). */
export function parseLeases(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const [, mac, ip] = line.trim().split(/\s+/);
    if (mac && ip && /^[0-9a-f:]{17}$/i.test(mac)) out.set(mac.toLowerCase(), ip);
  }
  return out;
}

/** The dnsmasq of one target, under `<state>/dhcp`. */
export class DhcpServer {
  private readonly dir: string;

  constructor(
    stateDir: string,
    private readonly settings: DhcpSettings,
    private readonly entryUrl: string,
    private readonly tftpRoot = IPXE_TFTP_ROOT,
  ) {
    this.dir = path.join(stateDir, 'dhcp');
  }

  private get files() {
    return { leases: path.join(this.dir, 'leases'), log: path.join(this.dir, 'dnsmasq.log'), pid: path.join(this.dir, 'dnsmasq.pid'), daemon: path.join(this.dir, 'daemon.log') };
  }

  /** The running dnsmasq's pid (checked against its command line: its lease file is this target's), if any. */
  runningPid(): number | undefined {
    const pid = Number(readFileSyncOr(this.files.pid).trim());
    return Number.isInteger(pid) && pid > 0 && isOurProcess(pid, this.files.leases) ? pid : undefined;
  }

  /** Serve exactly these machines: a dnsmasq that already does is left alone, another one replaced. */
  async serve(hosts: readonly DhcpHost[]): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    const argv = dnsmasqArgv(this.settings, hosts, this.files, this.entryUrl, this.tftpRoot);
    const pid = this.runningPid();
    if (pid) {
      if (JSON.stringify(processArgv(pid)?.slice(1)) === JSON.stringify(argv.slice(1))) return;
      await stopProcess(pid, this.files.leases, 5_000);
    }
    const child = spawnDaemon(argv, { logFile: this.files.daemon, detached: true });
    // It refuses at once (a taken port, a missing interface) or runs.
    for (let i = 0; i < 20; i++) {
      await sleep(100);
      if (!isOurProcess(child, this.files.leases)) {
        throw new ConfigError(`dnsmasq did not start on ${this.settings.interface}: ${logTail(this.files.daemon, 5) || logTail(this.files.log, 5) || 'no output'}`, 'check dhcp.interface (it must exist on this worker) and that no other DHCP server uses that network');
      }
    }
    await fs.writeFile(this.files.pid, `${child}\n`);
    logger.info({ interface: this.settings.interface, pid: child }, 'dnsmasq serving the provisioning network');
  }

  /** Addresses leased so far, by MAC. */
  async leases(): Promise<Map<string, string>> {
    return parseLeases(await fs.readFile(this.files.leases, 'utf8').catch(() => ''));
  }

  async stop(): Promise<void> {
    const pid = this.runningPid();
    if (pid) await stopProcess(pid, this.files.leases, 5_000);
    await fs.rm(this.files.pid, { force: true });
  }
}

function readFileSyncOr(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}
