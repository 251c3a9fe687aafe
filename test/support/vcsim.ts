/**
 * VMware's own vSphere simulator for the vsphere tests: `vcsim` from govmomi (scripts/setup
 * --tests builds it into .tools/bin at the version govc has), on a free loopback port, in vCenter
 * mode or as a standalone ESXi host (`-esx`), with a TLS certificate the test makes (so the
 * thumbprint and CA are known out of band, as an operator reads them off vCenter), a login of its
 * own, its own TMPDIR (vcsim leaves govcsim-* datastore folders in the temp directory) and,
 * optionally, a SOAP trace and task delays. `govc()` runs govc against it as an administrator
 * would, for the test's own checks and for playing the guest's part (vcsim runs no guest).
 */
import { execFile, execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { logTail, spawnDaemon, stopProcess } from '../../src/exec/daemon';
import { freePort } from '../../src/exec/ports';

const ROOT = path.resolve(__dirname, '..', '..');
export const VCSIM = path.join(ROOT, '.tools', 'bin', 'vcsim');
export const GOVC = path.join(ROOT, '.tools', 'bin', 'govc');
/** No '@': vcsim's login check mangles a user name with one (vCenter's would be user@vsphere.local). */
export const VCSIM_USER = 'kubedos-deployer';
export const VCSIM_PASSWORD = 'vcsim-test-password';

const run = promisify(execFile);

export interface VcsimOptions {
  /** Simulate a standalone ESXi host instead of vCenter. */
  esx?: boolean;
  /** `-method-delay`, e.g. `{ CloneVm: 3000 }` (task names, as vcsim calls them). */
  delays?: Record<string, number>;
  /** Record every SOAP request (`-trace`), readable with `trace()`. */
  trace?: boolean;
}

export interface Vcsim {
  url: string;
  /** SHA-256 thumbprint of its certificate, colon hex, as vCenter shows it. */
  thumbprint: string;
  /** The certificate (self-signed, SAN 127.0.0.1): usable as tls.caFile. */
  caFile: string;
  dir: string;
  pid: number;
  /** Environment for govc as an administrator (pinned to the certificate). */
  govcEnv: Record<string, string>;
  govc(args: string[]): Promise<string>;
  /** Parsed `govc object.collect -json REF PROPS…`, as property → value. */
  props(ref: string, ...names: string[]): Promise<Record<string, unknown>>;
  /** The SOAP trace so far ('' without `trace`). */
  trace(): string;
  stop(): Promise<void>;
}

async function waitForPort(port: number, pid: number, logFile: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const up = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (up) return;
    try {
      process.kill(pid, 0);
    } catch {
      throw new Error(`vcsim exited before listening:\n${logTail(logFile)}`);
    }
    await sleep(100);
  }
  throw new Error(`vcsim did not listen on 127.0.0.1:${port} within ${timeoutMs} ms:\n${logTail(logFile)}`);
}

export async function startVcsim(options: VcsimOptions = {}): Promise<Vcsim> {
  if (!existsSync(VCSIM) || !existsSync(GOVC)) throw new Error(`${VCSIM} or ${GOVC} is missing: run scripts/setup --tests`);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kubedos-vcsim-'));
  const tmp = path.join(dir, 'tmp');
  execFileSync('mkdir', [tmp]);
  const cert = path.join(dir, 'vcsim.pem');
  const key = path.join(dir, 'vcsim.key');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=127.0.0.1/O=KubeDos vcsim test', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  const thumbprint = new X509Certificate(readFileSync(cert)).fingerprint256;
  const port = await freePort();
  const logFile = path.join(dir, 'vcsim.log');
  const traceFile = path.join(dir, 'trace.log');
  const argv = [
    VCSIM, '-l', `127.0.0.1:${port}`, '-tlscert', cert, '-tlskey', key, '-username', VCSIM_USER, '-password', VCSIM_PASSWORD,
    ...(options.esx ? ['-esx'] : []),
    ...(options.delays ? ['-method-delay', Object.entries(options.delays).map(([m, ms]) => `${m}:${ms}`).join(',')] : []),
    ...(options.trace ? ['-trace', '-trace-file', traceFile] : []),
  ];
  const pid = spawnDaemon(argv, { logFile, detached: false, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, TMPDIR: tmp } });
  try {
    await waitForPort(port, pid, logFile, 30_000);
  } catch (err) {
    await stopProcess(pid, dir, 2000);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const url = `https://127.0.0.1:${port}/sdk`;
  const knownHosts = path.join(dir, 'known_hosts');
  require('node:fs').writeFileSync(knownHosts, `127.0.0.1:${port} ${thumbprint}\n`);
  const govcEnv = { GOVC_URL: url, GOVC_USERNAME: VCSIM_USER, GOVC_PASSWORD: VCSIM_PASSWORD, GOVC_TLS_CA_CERTS: cert, GOVC_PERSIST_SESSION: 'false', GOVMOMI_HOME: path.join(dir, 'govmomi'), HOME: dir };
  const govc = async (args: string[]) => (await run(GOVC, args, { env: { ...govcEnv, PATH: process.env.PATH ?? '/usr/bin:/bin' }, maxBuffer: 64 * 1024 * 1024 })).stdout;
  return {
    url,
    thumbprint,
    caFile: cert,
    dir,
    pid,
    govcEnv,
    govc,
    async props(ref, ...names) {
      const changes = JSON.parse(await govc(['object.collect', '-json', ref, ...names])) as Array<{ name: string; val: unknown }>;
      return Object.fromEntries(changes.map((c) => [c.name, c.val]));
    },
    trace: () => (existsSync(traceFile) ? readFileSync(traceFile, 'utf8') : ''),
    async stop() {
      await stopProcess(pid, dir, 5000);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** extraConfig of a VM (from `props`) as key → value. */
export function extraConfigOf(value: unknown): Record<string, string> {
  const list = ((value as { _value?: Array<{ key: string; value: unknown }> } | null)?._value ?? []);
  return Object.fromEntries(list.map((o) => [o.key, String(o.value)]));
}
