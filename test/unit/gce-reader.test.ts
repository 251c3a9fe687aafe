/**
 * The image's GCE reader (src/foundry/gce-reader.ts) run for real with bash against a scratch
 * root, a fake DMI directory and a GCE METADATA SERVER STAND-IN on loopback
 * (test/support/gce-standin/metadata.cjs; the metadata server exists only on Compute Engine). The
 * reader leaves the network alone here (KUBEDOS_GCE_NO_LINK); the boot test
 * (test/e2e/cloud-firstboot.test.ts) covers DHCP and the metadata server inside a guest.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, promises as fs, readFileSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { GCE_PRODUCT_NAME, GCE_READER } from '../../src/foundry/gce-reader';
import { generateIdentity } from '../../src/targets/identity';
import { renderNocloud } from '../../src/targets/nocloud';
import { SCRATCH_HOSTNAME, scratchRoot } from '../support/scratch-root';

const { answer } = require('../support/gce-standin/metadata.cjs') as {
  answer: (doc: unknown, method: string, url: string, headers: Record<string, string | undefined>) => { status: number; headers: Record<string, string>; body: string };
};

const identity = generateIdentity('gce-0001');
const authorizedKeys = ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBx2k1yq5cXzRk0m9YV0l3cJvY8QdYgZ0m2l9ZsV1c3d ops@example'];
const userData = renderNocloud({ instanceId: 'p1-web-0001', identity, authorizedKeys })['user-data'];
const DOC = { instance: { id: '4611686018427387903', hostname: 'p1-web-0001.europe-west4-a.c.proj.internal', name: 'p1-web-0001', attributes: { 'user-data': userData, 'kubedos-record': '{}' } } };

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'kubedos-gce-reader-'));
});
afterAll(() => fs.rm(tmp, { recursive: true, force: true }));

/** The stand-in behind node:http; `requests` records what the reader asked and with which flavor header. */
async function metadataServer(doc: unknown, o: { noFlavor?: boolean } = {}) {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url} ${req.headers['metadata-flavor'] ?? '-'}`);
    const r = answer(doc, req.method!, req.url!, req.headers as Record<string, string>);
    const headers: Record<string, string | number> = { ...r.headers, 'content-length': Buffer.byteLength(r.body) };
    if (o.noFlavor) delete headers['Metadata-Flavor'];
    res.writeHead(r.status, headers).end(r.body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, requests, close: () => new Promise((r) => server.close(r)) };
}

async function scene(product = GCE_PRODUCT_NAME) {
  const dir = mkdtempSync(path.join(tmp, 'scene-'));
  const { root, lib } = await scratchRoot(dir);
  const reader = path.join(lib, 'metadata.d', '40-gce');
  await fs.writeFile(reader, GCE_READER, { mode: 0o755 });
  const dmi = path.join(dir, 'dmi');
  mkdirSync(dmi);
  writeFileSync(path.join(dmi, 'product_name'), `${product}\n`);
  writeFileSync(path.join(dmi, 'sys_vendor'), product === GCE_PRODUCT_NAME ? 'Google\n' : 'QEMU\n');
  const bin = path.join(dir, 'bin');
  mkdirSync(bin);
  execFileSync('ln', ['-s', execFileSync('sh', ['-c', 'command -v mawk'], { encoding: 'utf8' }).trim(), path.join(bin, 'awk')]);
  return { root, reader, dmi, bin };
}

function run(s: Awaited<ReturnType<typeof scene>>, port: number, env: Record<string, string> = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', [s.reader], {
      env: {
        PATH: `${s.bin}:/usr/sbin:/usr/bin:/sbin:/bin`,
        KUBEDOS_ROOT: s.root,
        KUBEDOS_DMI_DIR: s.dmi,
        KUBEDOS_GCE_METADATA: '127.0.0.1',
        KUBEDOS_GCE_METADATA_PORT: String(port),
        KUBEDOS_GCE_NO_LINK: '1',
        TMPDIR: path.join(s.root, 'run'),
        ...env,
      },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

describe('the metadata server stand-in answers like Compute Engine\'s', () => {
  const g = { 'metadata-flavor': 'Google' };
  test.each([
    ['/computeMetadata/v1/instance/id', {}, 403, undefined],
    ['/computeMetadata/v1/instance/id', g, 200, DOC.instance.id],
    ['/computeMetadata/v1/instance/attributes/', g, 200, 'user-data\nkubedos-record\n'],
    ['/computeMetadata/v1/instance/attributes/ssh-keys', g, 404, undefined],
    ['/latest/meta-data', g, 404, undefined],
  ])('GET %s %j → %s', (url, headers, status, body) => {
    const r = answer(DOC, 'GET', url, headers);
    expect(r.status).toBe(status);
    expect(r.headers['Metadata-Flavor']).toBe('Google');
    if (body !== undefined) expect(r.body).toBe(body);
  });
});

describe("the image's GCE reader", () => {
  test('on Compute Engine: user-data from the metadata server applied by the NoCloud rules', async () => {
    const md = await metadataServer(DOC);
    try {
      const s = await scene();
      const r = await run(s, md.port);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      const at = (p: string) => readFileSync(path.join(s.root, p), 'utf8');
      expect(at('etc/hostname')).toBe('gce-0001\n');
      expect(at('etc/ssh/ssh_host_ed25519_key')).toBe(identity.hostKeyPrivate);
      expect(at('etc/machine-id')).toBe(`${identity.machineId}\n`);
      expect(at('root/.ssh/authorized_keys')).toBe(`${authorizedKeys[0]}\n`);
      expect(at('var/lib/kubedos/instance-id')).toBe(`${DOC.instance.id}\n`);
      expect(md.requests).toEqual([
        'GET /computeMetadata/v1/instance/id Google',
        'GET /computeMetadata/v1/instance/hostname Google',
        'GET /computeMetadata/v1/instance/attributes/user-data Google',
      ]);
      expect(r.stdout).toContain(`kubedos: gce: read user-data of instance ${DOC.instance.id}`);
      expect(await fs.readdir(path.join(s.root, 'run'))).toEqual([]);
    } finally {
      await md.close();
    }
  });

  test('elsewhere (another DMI product) it does nothing and asks nobody', async () => {
    const md = await metadataServer(DOC);
    try {
      const s = await scene('Standard PC (Q35 + ICH9, 2009)');
      const r = await run(s, md.port);
      expect(r).toMatchObject({ status: 0, stdout: '', stderr: '' });
      expect(md.requests).toEqual([]);
      expect(readFileSync(path.join(s.root, 'etc/hostname'), 'utf8')).toBe(`${SCRATCH_HOSTNAME}\n`);
    } finally {
      await md.close();
    }
  });

  test('an instance without user-data: nothing applied, first boot goes on (the node makes its own keys)', async () => {
    const md = await metadataServer({ instance: { id: '42', hostname: 'x.c.p.internal', attributes: {} } });
    try {
      const s = await scene();
      const r = await run(s, md.port);
      expect(r.status).toBe(0);
      expect(r.stdout).toContain('the instance has no user-data: no metadata applied');
      expect(existsSync(path.join(s.root, 'etc/ssh/ssh_host_ed25519_key'))).toBe(false);
    } finally {
      await md.close();
    }
  });

  test('metadata server not answering: bounded retries, then nothing applied', async () => {
    const md = await metadataServer(DOC);
    const port = md.port;
    await md.close();
    const s = await scene();
    const started = Date.now();
    const r = await run(s, port, { KUBEDOS_GCE_WAIT_SECONDS: '2' });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('did not answer: no metadata applied');
    expect(Date.now() - started).toBeLessThan(30_000);
  });

  test('an answer without Metadata-Flavor: Google is not the metadata server\'s, and is not trusted', async () => {
    const md = await metadataServer(DOC, { noFlavor: true });
    try {
      const s = await scene();
      const r = await run(s, md.port, { KUBEDOS_GCE_WAIT_SECONDS: '2' });
      expect(r.status).toBe(0);
      expect(r.stdout).toContain('did not answer: no metadata applied');
      expect(existsSync(path.join(s.root, 'etc/ssh/ssh_host_ed25519_key'))).toBe(false);
    } finally {
      await md.close();
    }
  });

  test('an instance id that is not a number is refused', async () => {
    const md = await metadataServer({ instance: { ...DOC.instance, id: '1;reboot' } });
    try {
      const s = await scene();
      const r = await run(s, md.port);
      expect(r.status).toBe(1);
      expect(r.stdout).toContain('sent an instance id that is not a number');
    } finally {
      await md.close();
    }
  });
});

test('the stand-in also serves one request on stdin/stdout, as QEMU guestfwd starts it', () => {
  const dir = mkdtempSync(path.join(tmp, 'once-'));
  const docFile = path.join(dir, 'doc.json');
  writeFileSync(docFile, JSON.stringify(DOC));
  const out = execFileSync('node', [path.join(__dirname, '../support/gce-standin/metadata.cjs'), docFile], {
    input: 'GET /computeMetadata/v1/instance/id HTTP/1.1\r\nHost: metadata.google.internal\r\nMetadata-Flavor: Google\r\n\r\n',
    encoding: 'latin1',
  });
  expect(out.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
  expect(out).toContain('Metadata-Flavor: Google\r\n');
  expect(out.endsWith(`\r\n\r\n${DOC.instance.id}`)).toBe(true);
});
