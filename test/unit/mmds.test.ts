/**
 * Deploy-time identity through MMDS: the document the Foundry stores (src/targets/mmds.ts), and the
 * image's MMDS reader (src/foundry/mmds-reader.ts) run for real with bash against a scratch root and
 * an MMDS STAND-IN on loopback (test/support/mmds-standin.cjs; Firecracker cannot run here). The
 * reader leaves the network alone here (KUBEDOS_MMDS_NO_LINK); the microVM boot test
 * (test/e2e/format-firecracker.test.ts) covers the link setup inside a guest.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, promises as fs, readFileSync, existsSync, symlinkSync, mkdirSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { MMDS_READER } from '../../src/foundry/mmds-reader';
import { generateIdentity } from '../../src/targets/identity';
import { mmdsDocument } from '../../src/targets/mmds';
import { renderNocloud } from '../../src/targets/nocloud';
import { SCRATCH_HOSTNAME, scratchRoot } from '../support/scratch-root';

const { answer } = require('../support/mmds-standin.cjs') as {
  answer: (doc: unknown, token: string, method: string, url: string, headers: Record<string, string | undefined>) => { status: number; body: string };
};

const identity = generateIdentity('fc-0001');
const input = { instanceId: 'p1-micro-0001', identity, authorizedKeys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBx2k1yq5cXzRk0m9YV0l3cJvY8QdYgZ0m2l9ZsV1c3d ops@example'] };
const TOKEN = 'kubedos-test-token_0123456789';

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'kubedos-mmds-test-'));
});
afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

/** The stand-in behind node:http on loopback; `requests` records what the reader asked. */
async function standIn(doc: unknown, token = TOKEN) {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url} ${req.headers['x-metadata-token'] ? 'token' : 'no-token'}`);
    const { status, body } = answer(doc, token, req.method!, req.url!, req.headers as Record<string, string>);
    // Content-Length, as Firecracker sends it (node would otherwise send chunked).
    res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, requests, close: () => new Promise((r) => server.close(r)) };
}

/** A scratch root and the image's /usr/lib/kubedos layout: nocloud.awk, metadata.d/{10-nocloud,20-mmds}. */
async function scene(cmdline: string) {
  const dir = mkdtempSync(path.join(tmp, 'scene-'));
  const { root, lib } = await scratchRoot(dir);
  const reader = path.join(lib, 'metadata.d', '20-mmds');
  await fs.writeFile(reader, MMDS_READER, { mode: 0o755 });
  const cmdlineFile = path.join(dir, 'cmdline');
  await fs.writeFile(cmdlineFile, `${cmdline}\n`);
  // The image's awk is mawk: first on PATH as `awk`.
  const bin = path.join(dir, 'bin');
  mkdirSync(bin);
  if (!existsSync(path.join(bin, 'awk'))) symlinkSync(execFileSync('sh', ['-c', 'command -v mawk'], { encoding: 'utf8' }).trim(), path.join(bin, 'awk'));
  return { root, reader, cmdlineFile, bin };
}

function run(s: Awaited<ReturnType<typeof scene>>, port: number): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', [s.reader], {
      env: { PATH: `${s.bin}:/usr/sbin:/usr/bin:/sbin:/bin`, KUBEDOS_ROOT: s.root, KUBEDOS_CMDLINE: s.cmdlineFile, KUBEDOS_MMDS_PORT: String(port), KUBEDOS_MMDS_NO_LINK: '1', TMPDIR: path.join(s.root, 'run') },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

describe('the MMDS document the Foundry stores', () => {
  test('holds the same NoCloud text a cidata seed does, as two strings under latest/', () => {
    const doc = mmdsDocument(input);
    expect(doc).toEqual({ latest: renderNocloud(input) });
    expect(JSON.parse(JSON.stringify(doc))).toEqual(doc);
  });
});

describe('the MMDS stand-in answers like Firecracker MMDS V2 (IMDS form)', () => {
  const doc = mmdsDocument(input);
  test.each([
    ['PUT', '/latest/api/token', { 'x-metadata-token-ttl-seconds': '60' }, 200, TOKEN],
    ['PUT', '/latest/api/token', {}, 400, undefined],
    ['GET', '/latest/meta-data', {}, 401, undefined],
    ['GET', '/latest/meta-data', { 'x-metadata-token': TOKEN }, 200, doc.latest['meta-data']],
    ['GET', '/latest/', { 'x-metadata-token': TOKEN }, 200, 'meta-data\nuser-data'],
    ['GET', '/latest/vendor-data', { 'x-metadata-token': TOKEN }, 404, undefined],
  ])('%s %s', (method, url, headers, status, body) => {
    const r = answer(doc, TOKEN, method, url, headers);
    expect(r.status).toBe(status);
    if (body !== undefined) expect(r.body).toBe(body);
  });
});

describe("the image's MMDS reader", () => {
  test('with kubedos.metadata=mmds: token, meta-data, user-data, then the NoCloud rules apply them', async () => {
    const mmds = await standIn(mmdsDocument(input));
    try {
      const s = await scene('console=ttyS0 kubedos.metadata=mmds:127.0.0.1 root=/dev/vda rw');
      const r = await run(s, mmds.port);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(mmds.requests).toEqual(['PUT /latest/api/token no-token', 'GET /latest/meta-data token', 'GET /latest/user-data token']);
      const at = (p: string) => readFileSync(path.join(s.root, p), 'utf8');
      expect(at('etc/hostname')).toBe('fc-0001\n');
      expect(at('etc/ssh/ssh_host_ed25519_key')).toBe(identity.hostKeyPrivate);
      expect(at('etc/ssh/ssh_host_ed25519_key.pub')).toBe(`${identity.hostKeyPublic}\n`);
      expect(at('etc/machine-id')).toBe(`${identity.machineId}\n`);
      expect(at('root/.ssh/authorized_keys')).toBe(`${input.authorizedKeys[0]}\n`);
      expect(at('var/lib/kubedos/instance-id')).toBe('p1-micro-0001\n');
      expect(r.stdout).toContain('kubedos: mmds: read meta-data and user-data');
      // Nothing of the fetched documents is left behind in the scratch directory.
      expect(await fs.readdir(path.join(s.root, 'run'))).toEqual([]);
    } finally {
      await mmds.close();
    }
  });

  test('without kubedos.metadata=mmds it does nothing and asks nobody', async () => {
    const mmds = await standIn(mmdsDocument(input));
    try {
      const s = await scene('console=ttyS0 root=/dev/vda rw');
      const r = await run(s, mmds.port);
      expect(r).toMatchObject({ status: 0, stdout: '', stderr: '' });
      expect(mmds.requests).toEqual([]);
      expect(readFileSync(path.join(s.root, 'etc/hostname'), 'utf8')).toBe(`${SCRATCH_HOSTNAME}\n`);
    } finally {
      await mmds.close();
    }
  });

  test('MMDS without meta-data: nothing applied, first boot goes on (the node makes its own keys)', async () => {
    const mmds = await standIn({ latest: {} });
    try {
      const s = await scene('kubedos.metadata=mmds:127.0.0.1');
      const r = await run(s, mmds.port);
      expect(r.status).toBe(0);
      expect(r.stdout).toContain('MMDS holds no meta-data: no metadata applied');
      expect(existsSync(path.join(s.root, 'etc/ssh/ssh_host_ed25519_key'))).toBe(false);
    } finally {
      await mmds.close();
    }
  });

  test('MMDS not answering: bounded retries, then nothing applied', async () => {
    const mmds = await standIn({});
    const port = mmds.port;
    await mmds.close(); // nothing listens there now
    const s = await scene('kubedos.metadata=mmds:127.0.0.1');
    const started = Date.now();
    const r = await run(s, port);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('did not answer: no metadata applied');
    expect(Date.now() - started).toBeLessThan(30_000);
  });

  test.each([
    ['kubedos.metadata=mmds:169.254.169.254;reboot', /is not an IPv4 address/],
    ['kubedos.metadata=mmds:$(reboot)', /is not an IPv4 address/],
  ])('a malformed address is refused: %s', async (cmdline, why) => {
    const s = await scene(cmdline);
    const r = await run(s, 1);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(why);
  });

  test('a token with unexpected characters is refused, never sent on', async () => {
    const mmds = await standIn(mmdsDocument(input), 'bad\r\nX-Injected: 1');
    try {
      const s = await scene('kubedos.metadata=mmds:127.0.0.1');
      const r = await run(s, mmds.port);
      expect(r.status).toBe(1);
      expect(r.stdout).toContain('MMDS sent a token with unexpected characters');
      expect(mmds.requests).toEqual(['PUT /latest/api/token no-token']);
    } finally {
      await mmds.close();
    }
  });
});

test('the stand-in also serves one request on stdin/stdout, as QEMU guestfwd starts it', () => {
  const dir = mkdtempSync(path.join(tmp, 'once-'));
  const docFile = path.join(dir, 'doc.json');
  writeFileSync(docFile, JSON.stringify(mmdsDocument(input)));
  const out = execFileSync('node', [path.join(__dirname, '../support/mmds-standin.cjs'), docFile, TOKEN], {
    input: `GET /latest/meta-data HTTP/1.1\r\nHost: 169.254.169.254\r\nX-metadata-token: ${TOKEN}\r\n\r\n`,
    encoding: 'latin1',
  });
  const body = renderNocloud(input)['meta-data'];
  expect(out).toBe(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
});
