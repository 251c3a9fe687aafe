/**
 * OpenStack's Redfish emulator, sushy-tools (`sushy-emulator`, installed by scripts/setup --tests
 * into .tools/sushy-venv, a venv that sees Debian's python3-libvirt), started by the tests over
 * TLS with basic authentication: with its "fake" driver (systems are dictionaries; power changes
 * land 1-11 s after they are asked for, like a slow BMC) for fast API tests, or with its libvirt
 * driver in front of real QEMU machines (baremetal-lab.ts). Also the certificates a BMC presents.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isOurProcess, spawnDaemon, stopProcess } from '../../src/exec/daemon';

export const ROOT = path.resolve(__dirname, '..', '..');
export const SUSHY_VENV = path.join(ROOT, '.tools', 'sushy-venv');
export const SUSHY = path.join(SUSHY_VENV, 'bin', 'sushy-emulator');

export interface Cert {
  cert: string;
  key: string;
  /** `AB:CD:…` SHA-256 of the certificate. */
  fingerprint: string;
}

function openssl(args: string[]): string {
  return execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export function fingerprintOfPem(file: string): string {
  return openssl(['x509', '-in', file, '-noout', '-fingerprint', '-sha256']).trim().replace(/^.*=/, '');
}

/** A self-signed certificate for `ip` (a BMC's factory certificate), or one signed by `ca`. */
export async function makeCert(dir: string, name: string, ip: string, ca?: Cert): Promise<Cert> {
  await fs.mkdir(dir, { recursive: true });
  const cert = path.join(dir, `${name}.crt`);
  const key = path.join(dir, `${name}.key`);
  const subject = ['-subj', `/CN=${name}`];
  if (!ca) {
    openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '3', ...subject, '-addext', `subjectAltName=IP:${ip}`, '-addext', 'basicConstraints=critical,CA:TRUE']);
  } else {
    const csr = path.join(dir, `${name}.csr`);
    const ext = path.join(dir, `${name}.ext`);
    await fs.writeFile(ext, `subjectAltName=IP:${ip}\nbasicConstraints=CA:FALSE\n`);
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', csr, ...subject]);
    openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-out', cert, '-days', '3', '-extfile', ext]);
  }
  return { cert, key, fingerprint: fingerprintOfPem(cert) };
}

/** A fake-driver system (sushy's SUSHY_EMULATOR_FAKE_SYSTEMS). */
export interface FakeSystem {
  uuid: string;
  name: string;
  power_state: 'On' | 'Off';
  nics: { mac: string; ip?: string }[];
}

export interface SushyOptions {
  dir: string;
  host: string;
  port: number;
  cert: Cert;
  users: { user: string; password: string }[];
  /** The fake driver with these systems; else libvirt at `libvirtUri`. */
  fake?: FakeSystem[];
  libvirtUri?: string;
  /** Run inside this network namespace. */
  netns?: string;
}

export interface Sushy {
  url: string;
  pid: number;
  logFile: string;
  /** The emulator's log (its access log: one line per request). */
  log(): string;
  stop(): Promise<void>;
}

/** Start sushy-emulator and wait until it answers. */
export async function startSushy(o: SushyOptions): Promise<Sushy> {
  if (!existsSync(SUSHY)) throw new Error(`${SUSHY} is missing: run scripts/setup --tests`);
  await fs.mkdir(o.dir, { recursive: true });
  const htpasswd = path.join(o.dir, 'htpasswd');
  const hashes = o.users.map((u) => {
    const r = spawnSync(path.join(SUSHY_VENV, 'bin', 'python'), ['-c', 'import bcrypt,sys; print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(rounds=4)).decode())', u.password], { encoding: 'utf8' });
    return `${u.user}:${r.stdout.trim()}`;
  });
  await fs.writeFile(htpasswd, `${hashes.join('\n')}\n`);
  const conf = path.join(o.dir, 'sushy.conf');
  const lines = [
    'import json',
    `SUSHY_EMULATOR_LISTEN_IP = ${JSON.stringify(o.host)}`,
    `SUSHY_EMULATOR_LISTEN_PORT = ${o.port}`,
    `SUSHY_EMULATOR_SSL_CERT = ${JSON.stringify(o.cert.cert)}`,
    `SUSHY_EMULATOR_SSL_KEY = ${JSON.stringify(o.cert.key)}`,
    `SUSHY_EMULATOR_AUTH_FILE = ${JSON.stringify(htpasswd)}`,
    `SUSHY_EMULATOR_STATE_DIR = ${JSON.stringify(path.join(o.dir, 'state'))}`,
    ...(o.fake ? ['SUSHY_EMULATOR_FAKE_DRIVER = True', `SUSHY_EMULATOR_FAKE_SYSTEMS = json.loads(${JSON.stringify(JSON.stringify(o.fake))})`] : [`SUSHY_EMULATOR_LIBVIRT_URI = ${JSON.stringify(o.libvirtUri)}`]),
  ];
  await fs.writeFile(conf, `${lines.join('\n')}\n`);
  const logFile = path.join(o.dir, 'sushy.log');
  const argv = [...(o.netns ? ['ip', 'netns', 'exec', o.netns] : []), SUSHY, '--config', conf];
  // Images sushy downloads for virtual media go to its temporary directory: keep them in ours.
  const tmp = path.join(o.dir, 'tmp');
  await fs.mkdir(tmp, { recursive: true });
  const pid = spawnDaemon(argv, { logFile, detached: false, env: { ...process.env, TMPDIR: tmp, PYTHONUNBUFFERED: '1' } });
  const url = `https://${o.host}:${o.port}`;
  const deadline = Date.now() + 60_000;
  while (!readFileSync(logFile, 'utf8').includes('Running on')) {
    if (!isOurProcess(pid, conf)) throw new Error(`sushy-emulator exited:\n${readFileSync(logFile, 'utf8')}`);
    if (Date.now() > deadline) throw new Error(`sushy-emulator did not start:\n${readFileSync(logFile, 'utf8')}`);
    await sleep(200);
  }
  return {
    url,
    pid,
    logFile,
    log: () => readFileSync(logFile, 'utf8'),
    stop: () => stopProcess(pid, conf, 5_000),
  };
}
