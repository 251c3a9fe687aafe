/**
 * The image's Azure reader (src/foundry/azure-reader.ts) run for real with bash against a scratch
 * root, a fake DMI directory, an ovf-env.xml as Azure writes it on the provisioning media
 * (test/support/azure-standin/ovf-env.ts) and a WIRESERVER STAND-IN on loopback
 * (test/support/azure-standin/wireserver.cjs; the WireServer exists only inside Azure). The boot
 * test (test/e2e/cloud-firstboot.test.ts) covers the real media (a CD-ROM), systemd-run and the
 * network inside a guest.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, promises as fs, readFileSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { AZURE_CHASSIS_ASSET_TAG, AZURE_READER } from '../../src/foundry/azure-reader';
import { generateIdentity } from '../../src/targets/identity';
import { renderNocloud } from '../../src/targets/nocloud';
import { ovfEnvXml } from '../support/azure-standin/ovf-env';
import { SCRATCH_HOSTNAME, scratchRoot } from '../support/scratch-root';

const { answer } = require('../support/azure-standin/wireserver.cjs') as {
  answer: (s: unknown, method: string, url: string, headers: Record<string, string | undefined>, body: string) => { status: number; body: string; type?: string; report?: Record<string, string> };
};

const identity = generateIdentity('az-0001');
const authorizedKeys = ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBx2k1yq5cXzRk0m9YV0l3cJvY8QdYgZ0m2l9ZsV1c3d ops@example'];
const userData = renderNocloud({ instanceId: 'p1-web-0001', identity, authorizedKeys })['user-data'];
const UUID = '7F3C2A10-9B4E-4D21-8C55-0A1B2C3D4E5F';
const GOAL = { incarnation: 1, containerId: 'c6d5526c-5ac2-4200-b6e2-56f2b70c5ab2', instanceId: '7d2cbc6e0a6b4d4da1d72f6b4b0e0b32.p1-web-0001' };

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'kubedos-azure-reader-'));
});
afterAll(() => fs.rm(tmp, { recursive: true, force: true }));

/** The stand-in behind node:http; `requests` records what the reader sent, `reports` what was accepted. */
async function wireServer(state: unknown = GOAL) {
  const requests: string[] = [];
  const reports: Array<Record<string, string>> = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      requests.push(`${req.method} ${req.url}`);
      const r = answer(state, req.method!, req.url!, req.headers as Record<string, string>, body);
      if (r.report) reports.push(r.report);
      res.writeHead(r.status, { 'content-type': r.type ?? 'text/plain', 'content-length': Buffer.byteLength(r.body) }).end(r.body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, requests, reports, close: () => new Promise((r) => server.close(r)) };
}

async function scene(o: { azure?: boolean; ovf?: string | null } = {}) {
  const dir = mkdtempSync(path.join(tmp, 'scene-'));
  const { root, lib } = await scratchRoot(dir);
  const reader = path.join(lib, 'metadata.d', '30-azure');
  await fs.writeFile(reader, AZURE_READER, { mode: 0o755 });
  const dmi = path.join(dir, 'dmi');
  mkdirSync(dmi);
  await fs.writeFile(path.join(dmi, 'chassis_asset_tag'), `${o.azure === false ? 'No Asset Tag' : AZURE_CHASSIS_ASSET_TAG}\n`);
  await fs.writeFile(path.join(dmi, 'product_uuid'), `${UUID}\n`);
  const ovfDir = path.join(dir, 'media');
  mkdirSync(ovfDir);
  const ovf = o.ovf === undefined ? ovfEnvXml({ hostname: 'az-0001', adminUsername: 'kubedos', sshPublicKeys: authorizedKeys, customDataBase64: Buffer.from(userData).toString('base64') }) : o.ovf;
  if (ovf !== null) await fs.writeFile(path.join(ovfDir, 'ovf-env.xml'), ovf);
  const bin = path.join(dir, 'bin');
  mkdirSync(bin);
  execFileSync('ln', ['-s', execFileSync('sh', ['-c', 'command -v mawk'], { encoding: 'utf8' }).trim(), path.join(bin, 'awk')]);
  return { root, reader, dmi, ovfDir, bin };
}

function run(s: Awaited<ReturnType<typeof scene>>, port: number, env: Record<string, string> = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', [s.reader], {
      env: {
        PATH: `${s.bin}:/usr/sbin:/usr/bin:/sbin:/bin`,
        KUBEDOS_ROOT: s.root,
        KUBEDOS_DMI_DIR: s.dmi,
        KUBEDOS_AZURE_OVF_DIR: s.ovfDir,
        KUBEDOS_AZURE_WIRESERVER: '127.0.0.1',
        KUBEDOS_AZURE_WIRESERVER_PORT: String(port),
        KUBEDOS_AZURE_REPORT: 'inline',
        KUBEDOS_AZURE_RETRY_SECONDS: '1',
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

describe('the WireServer stand-in answers like Azure\'s (x-ms-version 2012-11-30)', () => {
  const v = { 'x-ms-version': '2012-11-30' };
  const health = (incarnation: number, container: string, instance: string) =>
    `<?xml version="1.0" encoding="utf-8"?>\n<Health><GoalStateIncarnation>${incarnation}</GoalStateIncarnation><Container><ContainerId>${container}</ContainerId><RoleInstanceList><Role><InstanceId>${instance}</InstanceId><Health><State>Ready</State></Health></Role></RoleInstanceList></Container></Health>`;
  test.each([
    ['GET', '/machine/?comp=goalstate', {}, '', 400],
    ['GET', '/machine/?comp=goalstate', v, '', 200],
    ['POST', '/machine/?comp=health', { ...v, 'content-type': 'text/xml;charset=utf-8' }, health(1, GOAL.containerId, GOAL.instanceId), 200],
    ['POST', '/machine/?comp=health', { ...v, 'content-type': 'text/xml;charset=utf-8' }, health(2, GOAL.containerId, GOAL.instanceId), 400],
    ['POST', '/machine/?comp=health', { ...v, 'content-type': 'text/xml;charset=utf-8' }, health(1, GOAL.containerId, 'other'), 400],
    ['POST', '/machine/?comp=health', { ...v, 'content-type': 'application/json' }, health(1, GOAL.containerId, GOAL.instanceId), 400],
  ])('%s %s → %#', (method, url, headers, body, status) => {
    expect(answer(GOAL, method, url, headers, body).status).toBe(status);
  });
});

describe("the image's Azure reader", () => {
  test('on Azure: custom data from ovf-env.xml applied by the NoCloud rules, then "Ready" reported to the WireServer', async () => {
    const wire = await wireServer();
    try {
      const s = await scene();
      const r = await run(s, wire.port);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      const at = (p: string) => readFileSync(path.join(s.root, p), 'utf8');
      expect(at('etc/hostname')).toBe('az-0001\n');
      expect(at('etc/ssh/ssh_host_ed25519_key')).toBe(identity.hostKeyPrivate);
      expect(at('etc/ssh/ssh_host_ed25519_key.pub')).toBe(`${identity.hostKeyPublic}\n`);
      expect(at('etc/machine-id')).toBe(`${identity.machineId}\n`);
      expect(at('root/.ssh/authorized_keys')).toBe(`${authorizedKeys[0]}\n`);
      // instance-id: the SMBIOS system UUID, as cloud-init's Azure datasource takes it.
      expect(at('var/lib/kubedos/instance-id')).toBe(`${UUID.toLowerCase()}\n`);
      expect(wire.requests).toEqual(['GET /machine/?comp=goalstate', 'POST /machine/?comp=health']);
      expect(wire.reports).toEqual([{ incarnation: '1', containerId: GOAL.containerId, instanceId: GOAL.instanceId, state: 'Ready' }]);
      expect(r.stdout).toContain('kubedos: azure: read ovf-env.xml with custom data');
      expect(r.stdout).toContain(`kubedos: azure: reported ready to the WireServer (incarnation 1, container ${GOAL.containerId}, instance ${GOAL.instanceId})`);
      expect(await fs.readdir(path.join(s.root, 'run'))).toEqual([]);
    } finally {
      await wire.close();
    }
  });

  test('elsewhere (another chassis asset tag) it does nothing and asks nobody', async () => {
    const wire = await wireServer();
    try {
      const s = await scene({ azure: false });
      const r = await run(s, wire.port);
      expect(r).toMatchObject({ status: 0, stdout: '', stderr: '' });
      expect(wire.requests).toEqual([]);
      expect(readFileSync(path.join(s.root, 'etc/hostname'), 'utf8')).toBe(`${SCRATCH_HOSTNAME}\n`);
    } finally {
      await wire.close();
    }
  });

  test('no provisioning media: nothing applied, but provisioning is still reported complete (else Azure fails the VM)', async () => {
    const wire = await wireServer();
    try {
      const s = await scene({ ovf: null });
      const r = await run(s, wire.port);
      expect(r.status).toBe(0);
      expect(r.stdout).toContain('no provisioning media (ovf-env.xml): no metadata applied');
      expect(existsSync(path.join(s.root, 'etc/ssh/ssh_host_ed25519_key'))).toBe(false);
      expect(wire.reports.map((x) => x.state)).toEqual(['Ready']);
    } finally {
      await wire.close();
    }
  });

  test('custom data that is not base64 is refused before anything is applied', async () => {
    const wire = await wireServer();
    try {
      const s = await scene({ ovf: ovfEnvXml({ hostname: 'az-0001', adminUsername: 'kubedos', sshPublicKeys: [], customDataBase64: 'not*base64!' }) });
      const r = await run(s, wire.port);
      expect(r.status).toBe(1);
      expect(r.stdout).toContain("ovf-env.xml's CustomData is not base64");
      expect(readFileSync(path.join(s.root, 'etc/hostname'), 'utf8')).toBe(`${SCRATCH_HOSTNAME}\n`);
    } finally {
      await wire.close();
    }
  });

  test('WireServer not answering: retried until the bound, then a clear failure', async () => {
    const wire = await wireServer();
    const port = wire.port;
    await wire.close();
    const s = await scene();
    const started = Date.now();
    const r = await run(s, port, { KUBEDOS_AZURE_REPORT_SECONDS: '3' });
    expect(r.status).toBe(1);
    expect(r.stdout).toContain('did not take the ready report; Azure will fail this VM\'s provisioning');
    expect(Date.now() - started).toBeLessThan(30_000);
    // The identity was applied first all the same.
    expect(readFileSync(path.join(s.root, 'etc/hostname'), 'utf8')).toBe('az-0001\n');
  });

  test('a goal state whose ids carry unexpected characters is refused, never echoed into the report', async () => {
    const wire = await wireServer({ ...GOAL, containerId: 'c6d5 $(reboot)' });
    try {
      const s = await scene();
      const r = await run(s, wire.port, { KUBEDOS_AZURE_REPORT_SECONDS: '2' });
      expect(r.status).toBe(1);
      expect(r.stdout).toContain("the WireServer's goal state has no usable ContainerId");
      expect(wire.requests).toEqual(['GET /machine/?comp=goalstate']);
    } finally {
      await wire.close();
    }
  });
});
