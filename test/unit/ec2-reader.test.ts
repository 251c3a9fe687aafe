/**
 * Deploy-time identity on AWS: the user-data the aws driver launches instances with, and the
 * image's EC2 reader (src/foundry/ec2-reader.ts) run for real with bash against a scratch root
 * and an EC2 IMDS STAND-IN on loopback (test/support/imds-standin.cjs: IMDSv2 semantics; no EC2
 * here). The reader leaves the network alone here (KUBEDOS_IMDS_NO_LINK); the boot test
 * (test/e2e/aws-boot.test.ts) covers DHCP and the link inside a guest.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, promises as fs, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { EC2_READER, EC2_SYS_VENDOR } from '../../src/foundry/ec2-reader';
import { userDataOf } from '../../src/targets/aws/driver';
import { generateIdentity } from '../../src/targets/identity';
import { renderNocloud } from '../../src/targets/nocloud';
import { SCRATCH_HOSTNAME, scratchRoot } from '../support/scratch-root';

const { answer } = require('../support/imds-standin.cjs') as {
  answer: (doc: unknown, token: string, method: string, url: string, headers: Record<string, string | undefined>) => { status: number; body: string };
};

const identity = generateIdentity('web-0001');
const request = { nodeId: 'p1-web-0001', identity, authorizedKeys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBx2k1yq5cXzRk0m9YV0l3cJvY8QdYgZ0m2l9ZsV1c3d ops@example'] };
const TOKEN = 'AQAEAKubedosTestToken_0123456789==';
const INSTANCE = 'i-0123456789abcdef0';

/** What IMDS serves an instance the driver launched: its user-data is the driver's, decoded. */
function docOf(userData = Buffer.from(userDataOf(request), 'base64').toString('utf8'), extra: Record<string, unknown> = {}) {
  return { 'meta-data': { 'instance-id': INSTANCE, 'local-ipv4': '10.0.1.23', 'ami-id': 'ami-0123456789abcdef0', ...extra }, ...(userData === '' ? {} : { 'user-data': userData }) };
}

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'kubedos-ec2-test-'));
});
afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

async function standIn(doc: unknown, token = TOKEN, throttleFirst: string[] = []) {
  const requests: string[] = [];
  const throttled = new Set(throttleFirst);
  const server = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url} ${req.headers['x-aws-ec2-metadata-token'] ? 'token' : 'no-token'}`);
    if (throttled.delete(req.url!)) return void res.writeHead(429, { 'content-length': 0 }).end();
    const { status, body } = answer(doc, token, req.method!, req.url!, req.headers as Record<string, string>);
    res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, requests, close: () => new Promise((r) => server.close(r)) };
}

/** A scratch root, the image's metadata.d (10-nocloud, 30-ec2) and a DMI directory saying `vendor`. */
async function scene(vendor: string) {
  const dir = mkdtempSync(path.join(tmp, 'scene-'));
  const { root, lib } = await scratchRoot(dir);
  const reader = path.join(lib, 'metadata.d', '30-ec2');
  await fs.writeFile(reader, EC2_READER, { mode: 0o755 });
  const dmi = path.join(dir, 'dmi');
  mkdirSync(dmi);
  writeFileSync(path.join(dmi, 'sys_vendor'), `${vendor}\n`);
  const bin = path.join(dir, 'bin');
  mkdirSync(bin);
  // The image's awk is mawk: first on PATH as `awk`.
  if (!existsSync(path.join(bin, 'awk'))) symlinkSync(execFileSync('sh', ['-c', 'command -v mawk'], { encoding: 'utf8' }).trim(), path.join(bin, 'awk'));
  return { root, reader, dmi, bin };
}

function run(s: Awaited<ReturnType<typeof scene>>, port: number): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', [s.reader], {
      env: { PATH: `${s.bin}:/usr/sbin:/usr/bin:/sbin:/bin`, KUBEDOS_ROOT: s.root, KUBEDOS_DMI_DIR: s.dmi, KUBEDOS_IMDS_ADDR: '127.0.0.1', KUBEDOS_IMDS_PORT: String(port), KUBEDOS_IMDS_NO_LINK: '1', TMPDIR: path.join(s.root, 'run') },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

describe('the user-data the aws driver launches instances with', () => {
  test('is the NoCloud #cloud-config a cidata seed carries (what the reader and a stock cloud-init read)', () => {
    const text = Buffer.from(userDataOf(request), 'base64').toString('utf8');
    expect(text).toBe(renderNocloud({ instanceId: request.nodeId, identity, authorizedKeys: request.authorizedKeys })['user-data']);
    expect(text).toMatch(/^#cloud-config\n/);
  });
});

describe('the IMDS stand-in answers like EC2 IMDSv2 (HttpTokens required)', () => {
  const doc = docOf();
  test.each([
    ['PUT', '/latest/api/token', { 'x-aws-ec2-metadata-token-ttl-seconds': '60' }, 200, TOKEN],
    ['PUT', '/latest/api/token', {}, 400, undefined],
    ['PUT', '/latest/api/token', { 'x-aws-ec2-metadata-token-ttl-seconds': '60', 'x-forwarded-for': '10.0.0.9' }, 403, undefined],
    ['GET', '/latest/meta-data/instance-id', {}, 401, undefined],
    ['GET', '/latest/meta-data/instance-id', { 'x-aws-ec2-metadata-token': 'other' }, 401, undefined],
    ['GET', '/latest/meta-data/instance-id', { 'x-aws-ec2-metadata-token': TOKEN }, 200, INSTANCE],
    ['GET', '/latest/meta-data/', { 'x-aws-ec2-metadata-token': TOKEN }, 200, 'instance-id\nlocal-ipv4\nami-id'],
    ['GET', '/latest/dynamic/instance-identity/document', { 'x-aws-ec2-metadata-token': TOKEN }, 404, undefined],
  ])('%s %s', (method, url, headers, status, body) => {
    const r = answer(doc, TOKEN, method, url, headers);
    expect(r.status).toBe(status);
    if (body !== undefined) expect(r.body).toBe(body);
  });
});

describe("the image's EC2 reader", () => {
  test(`on EC2 (DMI "${EC2_SYS_VENDOR}"): token first, instance-id, local-ipv4, user-data; the NoCloud rules apply them; no copy is left`, async () => {
    const imds = await standIn(docOf());
    try {
      const s = await scene(EC2_SYS_VENDOR);
      const r = await run(s, imds.port);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(imds.requests).toEqual([
        'PUT /latest/api/token no-token',
        'GET /latest/meta-data/instance-id token',
        'GET /latest/meta-data/local-ipv4 token',
        'GET /latest/user-data token',
      ]);
      const at = (p: string) => readFileSync(path.join(s.root, p), 'utf8');
      expect(at('etc/hostname')).toBe('web-0001\n');
      expect(at('etc/ssh/ssh_host_ed25519_key')).toBe(identity.hostKeyPrivate);
      expect(at('etc/ssh/ssh_host_ed25519_key.pub')).toBe(`${identity.hostKeyPublic}\n`);
      expect(at('etc/machine-id')).toBe(`${identity.machineId}\n`);
      expect(at('root/.ssh/authorized_keys')).toBe(`${request.authorizedKeys[0]}\n`);
      // EC2's own instance id is the meta-data instance-id (as cloud-init's Ec2 datasource has it).
      expect(at('var/lib/kubedos/instance-id')).toBe(`${INSTANCE}\n`);
      // First boot skips the readers after this one: the identity is applied.
      expect(at('var/lib/kubedos/identity-applied')).toBe(`${INSTANCE}\n`);
      expect(r.stdout).toContain(`kubedos: ec2: instance ${INSTANCE} at 10.0.1.23: read meta-data and user-data`);
      // The fetched user-data (it holds the private host key) is gone, and nothing printed it.
      expect(await fs.readdir(path.join(s.root, 'run'))).toEqual([]);
      expect(r.stdout).not.toContain(identity.hostKeyPrivate.split('\n')[1]);
    } finally {
      await imds.close();
    }
  });

  test('a throttled read (429) is asked again', async () => {
    const imds = await standIn(docOf(), TOKEN, ['/latest/meta-data/instance-id', '/latest/user-data']);
    try {
      const s = await scene(EC2_SYS_VENDOR);
      const r = await run(s, imds.port);
      expect(r.status).toBe(0);
      expect(imds.requests.filter((q) => q.startsWith('GET /latest/meta-data/instance-id'))).toHaveLength(2);
      expect(imds.requests.filter((q) => q.startsWith('GET /latest/user-data'))).toHaveLength(2);
      expect(readFileSync(path.join(s.root, 'etc/ssh/ssh_host_ed25519_key'), 'utf8')).toBe(identity.hostKeyPrivate);
    } finally {
      await imds.close();
    }
  });

  test.each(['QEMU', 'Microsoft Corporation', 'Google', ''])('elsewhere (DMI "%s") it does nothing and asks nobody', async (vendor) => {
    const imds = await standIn(docOf());
    try {
      const s = await scene(vendor);
      const r = await run(s, imds.port);
      expect(r).toMatchObject({ status: 0, stdout: '', stderr: '' });
      expect(imds.requests).toEqual([]);
      expect(readFileSync(path.join(s.root, 'etc/hostname'), 'utf8')).toBe(`${SCRATCH_HOSTNAME}\n`);
    } finally {
      await imds.close();
    }
  });

  test('on an image that carries cloud-init it steps aside (cloud-init reads the user-data), unless cloud-init is disabled', async () => {
    const imds = await standIn(docOf());
    try {
      const s = await scene(EC2_SYS_VENDOR);
      await fs.mkdir(path.join(s.root, 'usr/bin'), { recursive: true });
      await fs.writeFile(path.join(s.root, 'usr/bin/cloud-init'), '#!/bin/sh\n', { mode: 0o755 });
      const r = await run(s, imds.port);
      expect(r).toMatchObject({ status: 0, stdout: 'kubedos: ec2: cloud-init is installed: it reads the user-data\n' });
      expect(imds.requests).toEqual([]);
      await fs.mkdir(path.join(s.root, 'etc/cloud'), { recursive: true });
      await fs.writeFile(path.join(s.root, 'etc/cloud/cloud-init.disabled'), '');
      expect((await run(s, imds.port)).stdout).toContain('read meta-data and user-data');
    } finally {
      await imds.close();
    }
  });

  test('an instance launched without user-data: the instance id is recorded, nothing else applied (the node makes its own keys)', async () => {
    const imds = await standIn(docOf(''));
    try {
      const s = await scene(EC2_SYS_VENDOR);
      const r = await run(s, imds.port);
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`instance ${INSTANCE} at 10\\.0\\.1\\.23: read meta-data \\(\\d+s\\)\\n`));
      expect(readFileSync(path.join(s.root, 'var/lib/kubedos/instance-id'), 'utf8')).toBe(`${INSTANCE}\n`);
      expect(existsSync(path.join(s.root, 'etc/ssh/ssh_host_ed25519_key'))).toBe(false);
    } finally {
      await imds.close();
    }
  });

  test('user-data that is not #cloud-config (a shell script) is ignored', async () => {
    const imds = await standIn(docOf('#!/bin/sh\ntouch /pwned\n'));
    try {
      const s = await scene(EC2_SYS_VENDOR);
      const r = await run(s, imds.port);
      expect(r.status).toBe(0);
      expect(r.stdout).toContain('user-data is not #cloud-config: ignored');
      expect(existsSync(path.join(s.root, 'pwned'))).toBe(false);
    } finally {
      await imds.close();
    }
  });

  test('IMDS not answering: bounded retries, then nothing applied', async () => {
    const imds = await standIn({});
    const port = imds.port;
    await imds.close(); // nothing listens there now
    const s = await scene(EC2_SYS_VENDOR);
    const started = Date.now();
    const r = await run(s, port);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('did not give a token: no metadata applied');
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(await fs.readdir(path.join(s.root, 'run'))).toEqual([]);
  });

  test('a token with unexpected characters is refused, never sent on', async () => {
    const imds = await standIn(docOf(), 'bad\r\nX-Injected: 1');
    try {
      const s = await scene(EC2_SYS_VENDOR);
      const r = await run(s, imds.port);
      expect(r.status).toBe(1);
      expect(r.stdout).toContain('IMDS sent a token with unexpected characters');
      expect(imds.requests).toEqual(['PUT /latest/api/token no-token']);
    } finally {
      await imds.close();
    }
  });

  test.each([
    ['instance-id', { 'instance-id': "i-0123'; reboot" }, /unexpected instance id/],
    ['local-ipv4', { 'local-ipv4': '$(reboot)' }, /unexpected local-ipv4/],
  ])('a malformed %s is refused before anything is applied', async (_what, extra, why) => {
    const imds = await standIn(docOf(undefined, extra));
    try {
      const s = await scene(EC2_SYS_VENDOR);
      const r = await run(s, imds.port);
      expect(r.status).toBe(1);
      expect(r.stdout).toMatch(why);
      expect(existsSync(path.join(s.root, 'etc/ssh/ssh_host_ed25519_key'))).toBe(false);
      expect(await fs.readdir(path.join(s.root, 'run'))).toEqual([]);
    } finally {
      await imds.close();
    }
  });
});

test('the stand-in also serves one request on stdin/stdout, as QEMU guestfwd starts it, and logs it', () => {
  const dir = mkdtempSync(path.join(tmp, 'once-'));
  const docFile = path.join(dir, 'doc.json');
  const log = path.join(dir, 'requests.log');
  writeFileSync(docFile, JSON.stringify(docOf()));
  const out = execFileSync('node', [path.join(__dirname, '../support/imds-standin.cjs'), docFile, TOKEN, log], {
    input: `GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254\r\nX-aws-ec2-metadata-token: ${TOKEN}\r\n\r\n`,
    encoding: 'latin1',
  });
  expect(out).toBe(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${INSTANCE.length}\r\nConnection: close\r\n\r\n${INSTANCE}`);
  expect(readFileSync(log, 'utf8')).toBe('GET /latest/meta-data/instance-id token 200\n');
});
