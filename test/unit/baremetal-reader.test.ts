/**
 * Identity of network-booted machines: the image's NoCloud-net reader (src/foundry/nocloud-net-reader.ts)
 * run for real with bash against a scratch root and the bare-metal driver's own boot server
 * (src/targets/baremetal/boot-server.ts, the real code, on loopback) serving one node's NoCloud
 * documents under its token. The reader leaves the network alone here
 * (KUBEDOS_NOCLOUD_NET_NO_LINK); the PXE boot in test/e2e/baremetal.test.ts covers the temporary
 * address on a real NIC.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, promises as fs, readFileSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { NOCLOUD_NET_READER } from '../../src/foundry/nocloud-net-reader';
import { serveBoot, type BootServerHandle } from '../../src/targets/baremetal/boot-server';
import { pxeNodeArgs } from '../../src/targets/baremetal/media';
import { generateIdentity } from '../../src/targets/identity';
import { renderNocloud } from '../../src/targets/nocloud';
import { SCRATCH_HOSTNAME, scratchRoot } from '../support/scratch-root';

const identity = generateIdentity('rack-0001');
const input = { instanceId: 'p1-rack-0001', identity, authorizedKeys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBx2k1yq5cXzRk0m9YV0l3cJvY8QdYgZ0m2l9ZsV1c3d ops@example'] };
const TOKEN = 'Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4';

let tmp: string;
let server: BootServerHandle;
const requests: string[] = [];
let seedServed = true;
/** Requests of these documents that fail (the handler throws) before they are served. */
const failing = new Map<string, number>();

beforeAll(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'kubedos-bm-reader-'));
  const docs = renderNocloud(input);
  server = await serveBoot('127.0.0.1', 0, {
    file: async (token, name, remote) => {
      requests.push(`${token === TOKEN ? 'token' : 'other'} ${name} ${remote}`);
      const fails = failing.get(name) ?? 0;
      if (fails > 0) {
        failing.set(name, fails - 1);
        throw new Error(`${name}: failing as asked`);
      }
      const doc = name.startsWith('seed/') ? docs[name.slice(5) as keyof typeof docs] : undefined;
      return token === TOKEN && seedServed && doc !== undefined ? { kind: 'text', body: doc, type: 'text/plain' } : undefined;
    },
    chain: async () => undefined,
  });
});

afterAll(async () => {
  await server?.release();
  await fs.rm(tmp, { recursive: true, force: true });
});

beforeEach(() => {
  requests.length = 0;
  seedServed = true;
  failing.clear();
});

async function scene(cmdline: string) {
  const dir = mkdtempSync(path.join(tmp, 'scene-'));
  const { root, lib } = await scratchRoot(dir);
  const reader = path.join(lib, 'metadata.d', '15-nocloud-net');
  await fs.writeFile(reader, NOCLOUD_NET_READER, { mode: 0o755 });
  const cmdlineFile = path.join(dir, 'cmdline');
  await fs.writeFile(cmdlineFile, `${cmdline}\n`);
  const bin = path.join(dir, 'bin');
  mkdirSync(bin);
  // The image's awk is mawk: first on PATH as `awk`.
  if (!existsSync(path.join(bin, 'awk'))) symlinkSync(execFileSync('sh', ['-c', 'command -v mawk'], { encoding: 'utf8' }).trim(), path.join(bin, 'awk'));
  return { root, reader, cmdlineFile, bin };
}

function run(s: Awaited<ReturnType<typeof scene>>, extra: Record<string, string> = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', [s.reader], {
      env: { PATH: `${s.bin}:/usr/sbin:/usr/bin:/sbin:/bin`, KUBEDOS_ROOT: s.root, KUBEDOS_CMDLINE: s.cmdlineFile, KUBEDOS_NOCLOUD_NET_NO_LINK: '1', TMPDIR: path.join(s.root, 'run'), ...extra },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

const seedUrl = () => `http://127.0.0.1:${server.port}/j/${TOKEN}/seed/`;

test('with the kernel arguments the driver gives a PXE node: both documents fetched, the NoCloud rules apply them', async () => {
  // What iPXE makes of the driver's arguments once it has expanded its settings.
  const args = pxeNodeArgs(seedUrl()).replace('${netX/ip}', '10.213.1.11').replace('${netX/gateway}', '10.213.1.1').replace('${netX/netmask}', '255.255.255.0').replace('${netX/mac:hexhyp}', '52-54-00-bd-00-01');
  const s = await scene(`initrd=kubedos-test.pxe.initrd boot=kubedos kubedos.root=/kubedos/root.squashfs console=ttyS0,115200n8 ${args}`);
  const r = await run(s);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  expect(requests).toEqual(['token seed/meta-data 127.0.0.1', 'token seed/user-data 127.0.0.1']);
  const at = (p: string) => readFileSync(path.join(s.root, p), 'utf8');
  expect(at('etc/hostname')).toBe('rack-0001\n');
  expect(at('etc/ssh/ssh_host_ed25519_key')).toBe(identity.hostKeyPrivate);
  expect(at('etc/ssh/ssh_host_ed25519_key.pub')).toBe(`${identity.hostKeyPublic}\n`);
  expect(at('etc/machine-id')).toBe(`${identity.machineId}\n`);
  expect(at('root/.ssh/authorized_keys')).toBe(`${input.authorizedKeys[0]}\n`);
  expect(r.stdout).toContain(`kubedos: nocloud-net: read meta-data and user-data from 127.0.0.1:${server.port}`);
  expect(await fs.readdir(path.join(s.root, 'run'))).toEqual([]);
});

test('a request that fails in the middle (networkd taking the link over) is retried: both documents applied', async () => {
  failing.set('seed/user-data', 2);
  const s = await scene(`ds=nocloud;s=${seedUrl()}`);
  const r = await run(s, { KUBEDOS_NOCLOUD_NET_ATTEMPTS: '3' });
  expect(r.status).toBe(0);
  expect(requests).toEqual(['token seed/meta-data 127.0.0.1', ...Array(3).fill('token seed/user-data 127.0.0.1')]);
  expect(readFileSync(path.join(s.root, 'etc/ssh/ssh_host_ed25519_key'), 'utf8')).toBe(identity.hostKeyPrivate);
  expect(r.stdout).toContain('read meta-data and user-data');
});

test('user-data that never comes after meta-data did: first boot fails, naming it', async () => {
  failing.set('seed/user-data', 99);
  const s = await scene(`ds=nocloud;s=${seedUrl()}`);
  const r = await run(s, { KUBEDOS_NOCLOUD_NET_ATTEMPTS: '2' });
  expect(r.status).toBe(1);
  expect(r.stdout).toContain('error: cannot read /j/');
});

test('cloud-init\'s other spellings: ds=nocloud-net and seedfrom=', async () => {
  const s = await scene(`ds=nocloud-net;seedfrom=${seedUrl()} quiet`);
  const r = await run(s);
  expect(r.status).toBe(0);
  expect(readFileSync(path.join(s.root, 'etc/hostname'), 'utf8')).toBe('rack-0001\n');
});

test('without ds=nocloud it does nothing and asks nobody', async () => {
  const s = await scene('console=ttyS0 root=/dev/vda rw');
  const r = await run(s);
  expect(r).toMatchObject({ status: 0, stdout: '', stderr: '' });
  expect(requests).toEqual([]);
  expect(readFileSync(path.join(s.root, 'etc/hostname'), 'utf8')).toBe(`${SCRATCH_HOSTNAME}\n`);
});

test('a URL the boot server does not serve (a closed job): nothing applied, first boot goes on', async () => {
  seedServed = false;
  const s = await scene(`ds=nocloud;s=${seedUrl()}`);
  const r = await run(s);
  expect(r.status).toBe(0);
  expect(r.stdout).toContain('the server has no meta-data: no metadata applied');
  expect(existsSync(path.join(s.root, 'etc/ssh/ssh_host_ed25519_key'))).toBe(false);
});

test('a server that does not answer: bounded retries, then nothing applied', async () => {
  const closed = await serveBoot('127.0.0.1', 0, { file: async () => undefined, chain: async () => undefined });
  const port = closed.port;
  await closed.release();
  const s = await scene(`ds=nocloud;s=http://127.0.0.1:${port}/j/${TOKEN}/seed/`);
  const r = await run(s, { KUBEDOS_NOCLOUD_NET_ATTEMPTS: '2' });
  expect(r.status).toBe(0);
  expect(r.stdout).toContain(`127.0.0.1:${port} did not answer: no metadata applied`);
});

test.each([
  ['ds=nocloud;s=https://10.0.0.5/seed/', /only an http:\/\/ URL/],
  ['ds=nocloud;s=http://10.0.0.5/$(reboot)/', /only an http:\/\/ URL/],
  ['ds=nocloud;s=http://10.0.0.5:80;reboot/', /only an http:\/\/ URL/],
])('a URL it cannot or must not read is refused: %s', async (cmdline, why) => {
  const s = await scene(cmdline);
  const r = await run(s);
  expect(r.status).toBe(1);
  expect(r.stdout).toMatch(why);
  expect(requests).toEqual([]);
});
