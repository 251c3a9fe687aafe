/**
 * Roles on a shared layer, with the real tools: two images of one platform that add packages of
 * their own (chrony, whose maintainer scripts add a user and enable a service; jq) are built at
 * once. The platform's packages are installed once, into one shared layer; each image's own go on
 * a copy of it; each tree holds exactly its lock; the shared tree is left as it was; an image
 * rebuilt alone from its lock, with no shared layer cached, is bit-identical; and it boots.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildImage, type BuildPlan, type BuildResult } from '../../src/foundry';
import { parseDeb822 } from '../../src/foundry/deb822';
import { bootToReady } from '../support/boot-to-ready';
import { builtImage, sharedCaches, TEST_PLAN } from '../support/images';

jest.setTimeout(30 * 60_000);

let tmp: string;
const built: Record<string, BuildResult> = {};

/** A role of the test platform: the shared test image's packages, and its own on top. */
function role(name: string, own: string[]): BuildPlan {
  return {
    ...TEST_PLAN,
    base: { ...TEST_PLAN.base, packages: [...TEST_PLAN.base.packages, ...own] },
    sharedPackages: [...TEST_PLAN.base.packages],
    image: { ...TEST_PLAN.image, name, role: name, hostname: `kubedos-${name}-0` },
    formats: ['qcow2'],
  };
}
const TIME = role('time', ['chrony']);
const TOOLS = role('tools', ['jq']);

const cacheDir = (which: string) => path.join(tmp, which, 'cache');
const layerTree = (which: string, r: BuildResult) => path.join(cacheDir(which), 'layers', r.manifest.layerDigest, 'rootfs');
const sharedLayers = async (which: string) => (await fs.readdir(path.join(cacheDir(which), 'layers'))).filter((n) => n.startsWith('shared-'));
const installed = async (tree: string) =>
  parseDeb822(await fs.readFile(path.join(tree, 'var/lib/dpkg/status'), 'utf8'))
    .filter((p) => p.Status === 'install ok installed')
    .map((p) => p.Package!);

beforeAll(async () => {
  await builtImage(); // the shared test image: its .debs are in the shared cache
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-shared-layer-'));
  const build = async (plan: BuildPlan) => {
    built[plan.image.name] = await buildImage(plan, { cacheDir: cacheDir('first'), debCacheDir: sharedCaches().debCacheDir, outputDir: path.join(tmp, 'out', plan.image.name) });
  };
  await Promise.all([build(TIME), build(TOOLS)]);
});
afterAll(async () => {
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

test("the platform's packages are installed once, into one shared layer; each image's own on top of a copy", async () => {
  const shared = await sharedLayers('first');
  expect(shared).toHaveLength(1);
  const sharedSet = await installed(path.join(cacheDir('first'), 'layers', shared[0]!, 'rootfs'));
  expect(sharedSet).toEqual(expect.arrayContaining(['openssh-server', 'linux-image-amd64', 'open-vm-tools']));
  // The images' installs did not touch the shared tree.
  expect(sharedSet).not.toContain('chrony');
  expect(sharedSet).not.toContain('jq');
  expect(built.time!.manifest.layerDigest).not.toBe(built.tools!.manifest.layerDigest);
});

test('each tree holds exactly its own lock, and a package installed on top ran its maintainer scripts', async () => {
  for (const r of [built.time!, built.tools!]) {
    expect((await installed(layerTree('first', r))).sort()).toEqual(r.lock.packages.map((p) => p.name).sort());
  }
  expect(await installed(layerTree('first', built.tools!))).not.toContain('chrony');
  const time = layerTree('first', built.time!);
  expect(await fs.readFile(path.join(time, 'etc/passwd'), 'utf8')).toMatch(/^_chrony:/m);
  expect((await fs.lstat(path.join(time, 'etc/systemd/system/multi-user.target.wants/chrony.service'))).isSymbolicLink()).toBe(true);
  // The image is sealed as any other: no host keys, no machine id, the initramfs made once and real.
  expect((await fs.readdir(path.join(time, 'etc/ssh'))).filter((n) => n.startsWith('ssh_host_'))).toEqual([]);
  expect(await fs.readFile(path.join(time, 'etc/machine-id'), 'utf8')).toBe('');
  expect((await fs.readdir(path.join(time, 'boot'))).filter((n) => n.startsWith('initrd.img-'))).toHaveLength(1);
  await expect(fs.access(path.join(time, 'usr/sbin/update-initramfs.kubedos'))).rejects.toThrow();
});

test('an image rebuilt alone from its lock, with no shared layer cached, is bit-identical', async () => {
  const again = await buildImage(TIME, { cacheDir: cacheDir('again'), debCacheDir: sharedCaches().debCacheDir, outputDir: path.join(tmp, 'again'), lock: built.time!.lock });
  expect(await sharedLayers('again')).toEqual(await sharedLayers('first'));
  expect(again.manifest.layerDigest).toBe(built.time!.manifest.layerDigest);
  expect(again.manifest.artifacts.map((a) => `${a.file} ${a.sha256}`)).toEqual(built.time!.manifest.artifacts.map((a) => `${a.file} ${a.sha256}`));
});

test('an image installed on the shared layer boots to ready', async () => {
  const qcow2 = built.time!.manifest.artifacts.find((a) => a.format === 'qcow2')!;
  const { ms, attempts, report } = await bootToReady(path.join(tmp, 'out', 'time', qcow2.file), TIME.image.hostname);
  console.log(`shared-layer image: boot to ready ${ms} ms (boots: ${attempts})`);
  // The report carries the console's last lines when it is not ready.
  expect(report).toMatch(/^ready in \d+ ms$/);
});
