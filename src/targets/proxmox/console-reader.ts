/**
 * Readiness on Proxmox: a small detached reader (perl, always on Proxmox) started on the host
 * before `qm start`. It connects to the VM's serial socket (<serialDir>/<vmid>.serial0) as soon
 * as QEMU creates it, appends the console to a log, and exits once `kubedos: ready <hostname>`
 * went by (QEMU serves one client at a time: `qm terminal` waits until then). The driver reads
 * that log; a reader that died is started again.
 */
import path from 'node:path';
import type { DriverContext } from '../driver';
import type { TargetHost } from '../host';
import { consoleReady } from '../identity';

/** How long the console reader waits for QEMU to create the serial socket. */
const SERIAL_WAIT_SECONDS = 300;

/**
 * The console reader started before `qm start` (argv: socket log pidfile hostname wait-seconds).
 * It forks: the parent writes the child's pid to the pid file, prints it and exits; the child
 * leaves the SSH session (setsid, stdio on /dev/null), connects as soon as QEMU creates the
 * socket, appends everything to the log and exits after the readiness line (or when QEMU
 * closes the socket; or at once when the log already has the line). Constant text: the values
 * are arguments, never spliced in.
 */
export const CONSOLE_READER = String.raw`use strict; use warnings; use IO::Socket::UNIX; use POSIX ();
my ($socket, $log, $pidfile, $want, $wait) = @ARGV;
my $pid = fork(); die "fork: $!\n" unless defined $pid;
if ($pid) {
  open(my $p, '>', "$pidfile.tmp") or die "$pidfile.tmp: $!\n"; print $p "$pid\n"; close($p);
  rename("$pidfile.tmp", $pidfile) or die "$pidfile: $!\n"; print "$pid\n"; exit 0;
}
POSIX::setsid();
open(STDIN, '<', '/dev/null'); open(STDOUT, '>', '/dev/null'); open(STDERR, '>', '/dev/null');
my $ready = qr/kubedos: ready \Q$want\E[\r\n]/;
if (open(my $in, '<', $log)) { local $/; my $seen = <$in>; close($in); if (defined($seen) && $seen =~ $ready) { unlink($pidfile); exit 0; } }
my $deadline = time() + $wait; my $s;
until ($s = IO::Socket::UNIX->new(Peer => $socket)) { exit 3 if time() > $deadline; select(undef, undef, undef, 0.05); }
open(my $out, '>>', $log) or exit 4; $out->autoflush(1);
my $tail = '';
while (1) {
  my $n = sysread($s, my $buf, 4096); last if !$n;
  print $out $buf; $tail = substr($tail . $buf, -8192);
  last if $tail =~ $ready;
}
close($s); close($out); unlink($pidfile); exit 0;
`;

/** Runs a command on the host with the driver's timeout and the call's signal. */
export type RunOnHost = (argv: readonly string[], ctx: DriverContext) => Promise<unknown>;

/** The console readers of one driver's nodes: their logs and pid files under `<stateDir>/console/`. */
export class ConsoleReaders {
  constructor(
    private readonly host: TargetHost,
    private readonly stateDir: string,
    /** Where QEMU's serial sockets are. */
    private readonly serialDir: string,
    private readonly run: RunOnHost,
  ) {}

  private get dir(): string {
    return path.posix.join(this.stateDir, 'console');
  }

  /** The console log of a node. */
  logOf(nodeId: string): string {
    return path.posix.join(this.dir, `${nodeId}.log`);
  }

  private pidFileOf(nodeId: string): string {
    return path.posix.join(this.dir, `${nodeId}.pid`);
  }

  /** Make the directory of logs and pid files (private: consoles show what the guest prints). */
  async makeDir(): Promise<void> {
    await this.host.mkdir(this.dir, 0o700);
  }

  /** What the console showed so far ('' before anything). */
  async read(nodeId: string): Promise<string> {
    return (await this.host.readFile(this.logOf(nodeId)))?.toString('utf8') ?? '';
  }

  /**
   * Make sure a console reader runs while readiness has not been seen; true when it has been
   * after all (a reader that just exited did so because the line went by: read the log again).
   */
  async ensure(nodeId: string, vmid: number, hostname: string, ctx: DriverContext): Promise<boolean> {
    if (await this.running(nodeId)) return false;
    if (consoleReady(await this.read(nodeId), hostname)) return true;
    await this.start(nodeId, vmid, hostname, ctx);
    return false;
  }

  private async pid(nodeId: string): Promise<number | undefined> {
    const pid = Number((await this.host.readFile(this.pidFileOf(nodeId)))?.toString('utf8').trim() ?? '0');
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  }

  private async running(nodeId: string): Promise<boolean> {
    const pid = await this.pid(nodeId);
    return pid !== undefined && (await this.host.isRunning(pid, this.logOf(nodeId)));
  }

  /** Start a reader of VM `vmid`'s serial console, waiting for `hostname`'s readiness line. */
  async start(nodeId: string, vmid: number, hostname: string, ctx: DriverContext): Promise<void> {
    const socket = path.posix.join(this.serialDir, `${vmid}.serial0`);
    await this.run(['perl', '-e', CONSOLE_READER, socket, this.logOf(nodeId), this.pidFileOf(nodeId), hostname, String(SERIAL_WAIT_SECONDS)], ctx);
  }

  /** Stop a node's reader, if one runs. */
  async stop(nodeId: string): Promise<void> {
    const pid = await this.pid(nodeId);
    if (pid === undefined) return;
    await this.host.stop(pid, this.logOf(nodeId), 5_000);
    await this.host.remove(this.pidFileOf(nodeId));
  }
}
