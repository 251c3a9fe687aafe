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
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { spawnDaemon, stopProcess } from '../../src/exec/daemon';
import { freePort } from '../../src/exec/ports';
import { waitForPort } from './wait-for-port';

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
    await waitForPort('vcsim', '127.0.0.1', port, pid, logFile, 30_000);
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

/** One recorded govc call: its argv and the names of the GOVC_* variables it was given. */
export interface GovcCall {
  argv: string[];
  env: string[];
  /** The values of the connection variables the driver handed govc (to check none is on argv). */
  secrets: string[];
}

/**
 * A govc for the driver that records every call (argv and the names of the variables in its
 * environment) into a file of JSON lines, then runs the real one with the same argv, environment
 * and stdio: the driver's calls are observed, nothing is simulated.
 */
export function recordingGovc(dir: string): { path: string; calls: () => GovcCall[] } {
  const log = path.join(dir, 'govc-calls.jsonl');
  const wrapper = path.join(dir, 'govc');
  require('node:fs').writeFileSync(
    wrapper,
    `#!${process.execPath}
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const argv = process.argv.slice(2);
const env = Object.keys(process.env).filter((k) => k.startsWith('GOVC_') || k.startsWith('GOVMOMI_')).sort();
const secrets = ['GOVC_PASSWORD', 'GOVC_USERNAME'].map((k) => process.env[k]).filter(Boolean);
fs.appendFileSync(${JSON.stringify(log)}, JSON.stringify({ argv, env, secrets }) + '\\n');
const r = spawnSync(${JSON.stringify(GOVC)}, argv, { stdio: 'inherit' });
process.exit(r.status === null ? 1 : r.status);
`,
    { mode: 0o755 },
  );
  return {
    path: wrapper,
    calls: () => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as GovcCall) : []),
  };
}

/** A VM as the guest player sees it. */
export interface PlayedVm {
  ref: string;
  name: string;
  annotation: string;
  extraConfig: Record<string, string>;
  /** The decoded NoCloud documents it was given. */
  metaData: string;
  userData?: string;
  hostname: string;
}

export interface GuestPlayer {
  /** Every VM played so far (ready reported), by reference. */
  played: Map<string, PlayedVm>;
  /** VMs seen booted but refused (`accept` said no). */
  refused: Set<string>;
  stop(): Promise<void>;
}

/**
 * THE TEST PLAYS THE GUESTS (vcsim runs none): every powered-on VM of `folder` that was given
 * guestinfo.metadata gets what a booted KubeDos image with open-vm-tools would report — its
 * hostname (read from the metadata, as the guest's reader would) as guestinfo.kubedos.ready and
 * an IPv4 address through VMware Tools (vcsim's SET.guest.ipAddress) — unless `accept` refuses it
 * (a node that never comes up).
 */
export function playGuests(sim: Vcsim, folder: string, options: { ip?: string; accept?: (vm: PlayedVm) => boolean; intervalMs?: number } = {}): GuestPlayer {
  const played = new Map<string, PlayedVm>();
  const refused = new Set<string>();
  let stopped = false;
  const decode = (extraConfig: Record<string, string>, key: string) => {
    const value = extraConfig[key];
    if (value === undefined) return undefined;
    return extraConfig[`${key}.encoding`] === 'base64' ? Buffer.from(value, 'base64').toString('utf8') : value;
  };
  const loop = (async () => {
    while (!stopped) {
      try {
        const listing = JSON.parse(await sim.govc(['ls', '-json', folder])) as { elements?: Array<{ Object?: { self?: { type: string; value: string }; name?: string; config?: { annotation?: string; extraConfig?: Array<{ key: string; value: unknown }> }; runtime?: { powerState?: string } } }> | null };
        for (const e of listing.elements ?? []) {
          const o = e.Object;
          if (o?.self?.type !== 'VirtualMachine' || o.runtime?.powerState !== 'poweredOn') continue;
          const ref = `VirtualMachine:${o.self.value}`;
          if (played.has(ref) || refused.has(ref)) continue;
          const extraConfig = Object.fromEntries((o.config?.extraConfig ?? []).map((x) => [x.key, String(x.value)]));
          const metaData = decode(extraConfig, 'guestinfo.metadata');
          if (!metaData) continue;
          const hostname = /^local-hostname: '?([^'\n]+)'?$/m.exec(metaData)?.[1];
          if (!hostname) continue;
          const vm: PlayedVm = { ref, name: o.name ?? '', annotation: o.config?.annotation ?? '', extraConfig, metaData, userData: decode(extraConfig, 'guestinfo.userdata'), hostname };
          if (options.accept && !options.accept(vm)) {
            refused.add(ref);
            continue;
          }
          await sim.govc(['vm.change', '-vm', ref, '-e', `guestinfo.kubedos.ready=${hostname}`, '-e', `SET.guest.ipAddress=${options.ip ?? '127.0.0.1'}`]);
          played.set(ref, vm);
        }
      } catch {
        /* a VM went away between listing and change: next round */
      }
      await sleep(options.intervalMs ?? 200);
    }
  })();
  return {
    played,
    refused,
    async stop() {
      stopped = true;
      await loop;
    },
  };
}
