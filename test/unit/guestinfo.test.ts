/**
 * Deploy-time identity through VMware guestinfo: the keys the vSphere driver sets
 * (src/targets/vsphere/guestinfo.ts), and the image's guestinfo reader and readiness reporter
 * (src/foundry/guestinfo-reader.ts) run for real with dash and mawk (the image's shell and awk)
 * against a scratch root, talking to a vmware-rpctool STAND-IN (test/support/rpctool-standin: no
 * VMware guest runs here) whose variables are files, and a DMI directory of the test's making.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, promises as fs, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import os from 'node:os';
import path from 'node:path';
import { GUESTINFO_READER, GUESTINFO_READY, GUESTINFO_READY_KEY } from '../../src/foundry/guestinfo-reader';
import { renderPayload } from '../../src/foundry/payload';
import { generateIdentity } from '../../src/targets/identity';
import { renderNocloud } from '../../src/targets/nocloud';
import { guestinfoDocuments } from '../../src/targets/vsphere/guestinfo';
import { SCRATCH_HOSTNAME, scratchRoot } from '../support/scratch-root';
import { TEST_PLAN } from '../support/images';

const RPCTOOL = path.join(__dirname, '..', 'support', 'rpctool-standin', 'vmware-rpctool');
const identity = generateIdentity('vm-0001');
const input = { instanceId: 'p1-web-0001', identity, authorizedKeys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBx2k1yq5cXzRk0m9YV0l3cJvY8QdYgZ0m2l9ZsV1c3d ops@example'] };

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'kubedos-guestinfo-test-'));
});
afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

interface Scene {
  root: string;
  reader: string;
  ready: string;
  dmi: string;
  vars: string;
  log: string;
  bin: string;
}

/** A scratch root, the image's /usr/lib/kubedos layout, a DMI directory and the stand-in's variables. */
async function scene(dmi: { sys_vendor?: string; product_name?: string }, vars: Record<string, string> = {}): Promise<Scene> {
  const dir = mkdtempSync(path.join(tmp, 'scene-'));
  const { root, lib } = await scratchRoot(dir);
  const reader = path.join(lib, 'metadata.d', '30-guestinfo');
  await fs.writeFile(reader, GUESTINFO_READER, { mode: 0o755 });
  mkdirSync(path.join(lib, 'ready.d'));
  const ready = path.join(lib, 'ready.d', '30-guestinfo');
  await fs.writeFile(ready, GUESTINFO_READY, { mode: 0o755 });
  const dmiDir = path.join(dir, 'dmi');
  mkdirSync(dmiDir);
  for (const [k, v] of Object.entries(dmi)) writeFileSync(path.join(dmiDir, k), `${v}\n`);
  const varDir = path.join(dir, 'guestinfo');
  mkdirSync(varDir);
  for (const [k, v] of Object.entries(vars)) writeFileSync(path.join(varDir, k), v);
  // The image's sh and awk are dash and mawk: first on PATH.
  const bin = path.join(dir, 'bin');
  mkdirSync(bin);
  symlinkSync(execFileSync('sh', ['-c', 'command -v mawk'], { encoding: 'utf8' }).trim(), path.join(bin, 'awk'));
  return { root, reader, ready, dmi: dmiDir, vars: varDir, log: path.join(dir, 'rpctool.log'), bin };
}

function run(s: Scene, script: string, args: string[] = [], rpctool = RPCTOOL): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('dash', [script, ...args], {
      env: {
        PATH: `${s.bin}:${path.dirname(process.execPath)}:/usr/sbin:/usr/bin:/sbin:/bin`,
        KUBEDOS_ROOT: s.root,
        KUBEDOS_DMI_DIR: s.dmi,
        KUBEDOS_RPCTOOL: rpctool,
        KUBEDOS_GUESTINFO_DIR: s.vars,
        KUBEDOS_RPCTOOL_LOG: s.log,
        TMPDIR: path.join(s.root, 'run'),
      },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

const calls = (s: Scene) => (existsSync(s.log) ? readFileSync(s.log, 'utf8').trim().split('\n') : []);
const at = (s: Scene, p: string) => readFileSync(path.join(s.root, p), 'utf8');
const VMWARE = { sys_vendor: 'VMware, Inc.', product_name: 'VMware7,1' };

describe('the guestinfo keys the driver sets', () => {
  test('carry the same NoCloud text a cidata seed does, base64 with its encoding key', () => {
    const docs = guestinfoDocuments(input);
    const files = renderNocloud(input);
    expect(Object.keys(docs).sort()).toEqual(['guestinfo.metadata', 'guestinfo.metadata.encoding', 'guestinfo.userdata', 'guestinfo.userdata.encoding']);
    expect(Buffer.from(docs['guestinfo.metadata'], 'base64').toString()).toBe(files['meta-data']);
    expect(Buffer.from(docs['guestinfo.userdata'], 'base64').toString()).toBe(files['user-data']);
    expect(docs['guestinfo.metadata.encoding']).toBe('base64');
    // One line each: an extraConfig value, never split.
    expect(docs['guestinfo.userdata']).toMatch(/^[A-Za-z0-9+/=]+$/);
  });
});

describe("the image's guestinfo reader", () => {
  test('on VMware: reads guestinfo.metadata and .userdata with vmware-rpctool, and the NoCloud rules apply them', async () => {
    const s = await scene(VMWARE, guestinfoDocuments(input) as unknown as Record<string, string>);
    const r = await run(s, s.reader);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('kubedos: guestinfo: read guestinfo.metadata and guestinfo.userdata');
    expect(at(s, 'etc/hostname')).toBe('vm-0001\n');
    expect(at(s, 'etc/ssh/ssh_host_ed25519_key')).toBe(identity.hostKeyPrivate);
    expect(at(s, 'etc/ssh/ssh_host_ed25519_key.pub')).toBe(`${identity.hostKeyPublic}\n`);
    expect(at(s, 'etc/machine-id')).toBe(`${identity.machineId}\n`);
    expect(at(s, 'root/.ssh/authorized_keys')).toBe(`${input.authorizedKeys[0]}\n`);
    expect(at(s, 'var/lib/kubedos/instance-id')).toBe('p1-web-0001\n');
    expect(calls(s)).toEqual(['info-get guestinfo.metadata', 'info-get guestinfo.metadata.encoding', 'info-get guestinfo.userdata', 'info-get guestinfo.userdata.encoding']);
    // Nothing of the documents is left behind in the scratch directory.
    expect(await fs.readdir(path.join(s.root, 'run'))).toEqual([]);
  });

  test('reads the other encodings cloud-init writes: none and gzip+base64', async () => {
    const files = renderNocloud(input);
    const s = await scene({ sys_vendor: 'VMware, Inc.', product_name: 'VMware Virtual Platform' }, {
      'guestinfo.metadata': files['meta-data'],
      'guestinfo.userdata': gzipSync(files['user-data']).toString('base64'),
      'guestinfo.userdata.encoding': 'gzip+base64',
    });
    const r = await run(s, s.reader);
    expect(r.status).toBe(0);
    expect(at(s, 'etc/hostname')).toBe('vm-0001\n');
    expect(at(s, 'etc/ssh/ssh_host_ed25519_key')).toBe(identity.hostKeyPrivate);
  });

  test('anywhere but VMware it exits at once and asks nothing', async () => {
    for (const dmi of [{ sys_vendor: 'QEMU', product_name: 'Standard PC (Q35 + ICH9, 2009)' }, {}]) {
      const s = await scene(dmi, guestinfoDocuments(input) as unknown as Record<string, string>);
      const r = await run(s, s.reader);
      expect(r).toMatchObject({ status: 0, stdout: '', stderr: '' });
      expect(calls(s)).toEqual([]);
      expect(at(s, 'etc/hostname')).toBe(`${SCRATCH_HOSTNAME}\n`);
    }
  });

  test('on VMware without open-vm-tools, or without guestinfo.metadata: nothing applied, first boot goes on', async () => {
    const noTool = await scene(VMWARE, guestinfoDocuments(input) as unknown as Record<string, string>);
    const r1 = await run(noTool, noTool.reader, [], 'vmware-rpctool-not-installed');
    expect(r1.status).toBe(0);
    expect(r1.stdout).toMatch(/without vmware-rpctool-not-installed \(install open-vm-tools\): no metadata applied/);

    const empty = await scene(VMWARE);
    const r2 = await run(empty, empty.reader);
    expect(r2.status).toBe(0);
    expect(r2.stdout).toContain('no guestinfo.metadata: no metadata applied');
    expect(existsSync(path.join(empty.root, 'etc/ssh/ssh_host_ed25519_key'))).toBe(false);

    // cloud-init marks a cleared key with an empty YAML document.
    const cleared = await scene(VMWARE, { 'guestinfo.metadata': '---' });
    expect((await run(cleared, cleared.reader)).stdout).toContain('guestinfo.metadata is empty');
  });

  test('a bad encoding or broken base64 fails first boot with the reason; JSON metadata is left to cloud-init', async () => {
    const bad = await scene(VMWARE, { 'guestinfo.metadata': 'abc', 'guestinfo.metadata.encoding': 'rot13' });
    const r1 = await run(bad, bad.reader);
    expect(r1.status).toBe(1);
    expect(r1.stdout).toContain("guestinfo.metadata.encoding 'rot13' is not supported");

    const broken = await scene(VMWARE, { 'guestinfo.metadata': '%%%not base64', 'guestinfo.metadata.encoding': 'base64' });
    const r2 = await run(broken, broken.reader);
    expect(r2.status).toBe(1);
    expect(r2.stdout).toContain('guestinfo.metadata is not valid base64');

    const json = await scene(VMWARE, { 'guestinfo.metadata': ' {"instance-id": "x", "local-hostname": "y"}' });
    const r3 = await run(json, json.reader);
    expect(r3.status).toBe(0);
    expect(r3.stdout).toContain('guestinfo.metadata is JSON');
    expect(at(json, 'etc/hostname')).toBe(`${SCRATCH_HOSTNAME}\n`);
  });
});

describe("the image's guestinfo readiness reporter", () => {
  test(`on VMware it sets ${GUESTINFO_READY_KEY} to the hostname; elsewhere it does nothing`, async () => {
    const s = await scene(VMWARE);
    const r = await run(s, s.ready, ['vm-0001']);
    expect(r.status).toBe(0);
    expect(readFileSync(path.join(s.vars, GUESTINFO_READY_KEY), 'utf8')).toBe('vm-0001');
    expect(calls(s)).toEqual([`info-set ${GUESTINFO_READY_KEY} …`]);

    const qemu = await scene({ sys_vendor: 'QEMU' });
    expect(await run(qemu, qemu.ready, ['vm-0001'])).toMatchObject({ status: 0, stdout: '' });
    expect(existsSync(path.join(qemu.vars, GUESTINFO_READY_KEY))).toBe(false);
  });
});

test('the payload installs the reader after the NoCloud and MMDS ones, and the reporter where the readiness unit runs it', () => {
  const entries = renderPayload(TEST_PLAN, { inputDigest: '0'.repeat(64), rootFsUuid: '00000000-0000-0000-0000-000000000000' });
  const files = new Map(entries.flatMap((e) => (e.kind === 'file' ? [[e.path, e] as const] : [])));
  const hooks = [...files.keys()].filter((p) => p.startsWith('/usr/lib/kubedos/metadata.d/')).sort();
  const at = (hook: string) => hooks.indexOf(`/usr/lib/kubedos/metadata.d/${hook}`);
  expect(at('30-guestinfo')).toBeGreaterThan(Math.max(at('10-nocloud'), at('20-mmds')));
  expect(at('10-nocloud')).toBeGreaterThanOrEqual(0);
  expect(files.get('/usr/lib/kubedos/metadata.d/30-guestinfo')).toMatchObject({ mode: 0o755, content: Buffer.from(GUESTINFO_READER) });
  expect(files.get('/usr/lib/kubedos/ready.d/30-guestinfo')).toMatchObject({ mode: 0o755, content: Buffer.from(GUESTINFO_READY) });
  expect(files.get('/usr/lib/kubedos/ready')!.content.toString()).toMatch(/for hook in \/usr\/lib\/kubedos\/ready\.d\/\*; do\n.*"\$hook" "\$\(uname -n\)"/);
});
