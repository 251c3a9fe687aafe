/**
 * The installer-media format, run on the shared test image with installer media assembled from
 * the debian-installer-12-netboot-amd64 package like Debian's mini.iso (src/foundry/debian-mini-iso):
 * the source is checked against its sha256 (path, URL, and debian-mini assembled by the build), both El Torito boot images survive the repack,
 * the media's own files stay, the preseed and payload ride in a new initrd; booted under SeaBIOS
 * and OVMF (TCG) until d-i has read the preseed (its early_command line) and moved past the
 * locale and keyboard steps to network detection, never asking for a language. Two productions
 * give the same digest.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { AddressInfo } from 'node:net';
import type { BuildPlan } from '../../src/foundry';
import { BuildFailedError } from '../../src/errors';
import { installerMedia } from '../../src/foundry/formats/installer-media';
import { INSTALLER_PATHS, parseElTorito, parseFindOutput, preseedLoadedLine } from '../../src/foundry/installer-media';
import { xorrisoExtract, xorrisoFindFiles, xorrisoReport } from '../../src/foundry/tools/xorriso';
import { debianMiniIso, type MiniIso } from '../../src/foundry/debian-mini-iso';
import { bootAndWatch, ovmf, type WatchResult } from '../support/media-boot';
import { reproduceFormats } from '../support/format-context';
import { builtImage, TEST_PLAN, type BuiltImage } from '../support/images';

jest.setTimeout(90 * 60 * 1000);

let img: BuiltImage;
let dir: string;
let mini: MiniIso;
let plan: BuildPlan;
let media: string;
let mediaSha256: string;

/** Questions d-i asks before network detection when nothing is preseeded. */
const EARLY_QUESTIONS = ['Choose language', 'Select a language', 'Select your location', 'Configure the keyboard', 'Keymap to use'];

beforeAll(async () => {
  img = await builtImage();
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-installer-'));
  mini = await debianMiniIso(path.join(dir, 'debian-12-mini.iso'));
  plan = { ...TEST_PLAN, image: { ...TEST_PLAN.image, installerIso: { source: mini.path, sha256: mini.sha256 } }, formats: ['installer-media'] };
  const started = Date.now();
  const [artifact] = await reproduceFormats(img, plan, ['installer-media'], path.join(dir, 'out'));
  console.log(`installer-media produced in ${Date.now() - started} ms`);
  media = artifact!.path;
  mediaSha256 = artifact!.sha256;
  expect(path.basename(media)).toBe(installerMedia.fileName(plan.image));
});

afterAll(async () => {
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

/** Digest of a buffer: large ones are compared by it (jest's deep equality walks every byte as a key). */
const digest = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function extract(iso: string, isoPath: string): Promise<Buffer> {
  const host = path.join(dir, `x-${path.basename(isoPath)}-${Date.now()}`);
  await xorrisoExtract(iso, [{ iso: isoPath, host }]);
  const data = await fs.readFile(host);
  await fs.rm(host);
  return data;
}

test('both El Torito boot images survive the repack unchanged, as do the volume id and the media files', async () => {
  const before = parseElTorito((await xorrisoReport(mini.path)).stdout);
  const report = (await xorrisoReport(media)).stdout;
  const after = parseElTorito(report);
  expect(after.map((i) => [i.platform, i.path])).toEqual([
    ['BIOS', '/isolinux.bin'],
    ['UEFI', '/boot/grub/efi.img'],
  ]);
  expect(after.map((i) => [i.platform, i.path])).toEqual(before.map((i) => [i.platform, i.path]));
  expect(report).toMatch(new RegExp(`^Volume Id\\s*:\\s*${mini.volid}\\s*$`, 'm'));
  expect(digest(await extract(media, '/boot/grub/efi.img'))).toBe(digest(await extract(mini.path, '/boot/grub/efi.img')));
  const sourceFiles = parseFindOutput((await xorrisoFindFiles(mini.path)).stdout);
  const files = parseFindOutput((await xorrisoFindFiles(media)).stdout);
  for (const f of sourceFiles) expect(files).toContain(f);
  expect(files).toEqual(expect.arrayContaining([INSTALLER_PATHS.initrd, INSTALLER_PATHS.preseed, '/isolinux-debian.cfg']));
  for (const f of ['/initrd.gz', '/linux', '/txt.cfg', '/ldlinux.c32']) expect(digest(await extract(media, f))).toBe(digest(await extract(mini.path, f)));
  // isolinux.bin differs only in its boot info table (bytes 8-63: where the image now has its PVD and itself).
  const withoutBootInfo = (b: Buffer) => Buffer.concat([b.subarray(0, 8), b.subarray(64)]);
  expect(digest(withoutBootInfo(await extract(media, '/isolinux.bin')))).toBe(digest(withoutBootInfo(await extract(mini.path, '/isolinux.bin'))));
  expect((await extract(media, '/isolinux-debian.cfg')).toString()).toBe((await extract(mini.path, '/isolinux.cfg')).toString());
});

test('both menus start the unattended entry (kernel of the text installer, new initrd, serial console); the originals stay', async () => {
  const grub = (await extract(media, INSTALLER_PATHS.grubCfg)).toString();
  const original = (await extract(mini.path, INSTALLER_PATHS.grubCfg)).toString();
  expect(grub).toContain(original.trimEnd());
  expect(grub).toMatch(/menuentry 'Automated install of kubedos-test[^']*' --id kubedos \{\n\s+linux\s+\/linux auto=true priority=critical --- no_timer_check console=tty0 console=ttyS0,115200n8\n\s+initrd\s+\/kubedos\/initrd\.gz\n\}/);
  expect(grub.trimEnd().split('\n').slice(-2)).toEqual(['set default=kubedos', 'set timeout=5']);
  const isolinux = (await extract(media, '/isolinux.cfg')).toString();
  expect(isolinux).toMatch(/^default kubedos$/m);
  expect(isolinux).toMatch(/^serial 0 115200$/m);
  expect(isolinux).toMatch(/^label kubedos\n {2}kernel \/linux\n {2}append initrd=\/kubedos\/initrd\.gz auto=true priority=critical --- no_timer_check console=tty0 console=ttyS0,115200n8$/m);
  expect(isolinux).toMatch(/^label debian\n {2}config \/isolinux-debian\.cfg \/$/m);
});

test("the new initrd is the media's, then a gzip'd archive with the preseed, the payload and its script", async () => {
  const original = await extract(mini.path, '/initrd.gz');
  const initrd = await extract(media, INSTALLER_PATHS.initrd);
  expect(digest(initrd.subarray(0, original.length))).toBe(digest(original));
  const added = gunzipSync(initrd.subarray(Math.ceil(original.length / 4) * 4)).toString('latin1');
  const preseed = (await extract(media, INSTALLER_PATHS.preseed)).toString();
  expect(added).toContain(preseed);
  expect(preseed).toContain(`d-i netcfg/get_hostname string ${TEST_PLAN.image.hostname}`);
  expect(preseed).toContain('d-i passwd/root-password-crypted password !');
  expect(preseed).toContain('d-i mirror/http/hostname string deb.debian.org');
  expect(preseed).toContain(`d-i mirror/suite string ${TEST_PLAN.base.suite}`);
  expect(preseed).toMatch(/^d-i pkgsel\/include string .*\bopenssh-server\b/m);
  expect(preseed).toContain('d-i preseed/late_command string sh /kubedos/apply-payload.sh');
  expect(added).toContain('kubedos/apply-payload.sh');
  expect(added).toMatch(/^f \d+ '\/root\/\.ssh\/authorized_keys' 0600$/m);
  expect(added).toContain(TEST_PLAN.image.authorizedKeys[0]);
  expect(added).toContain("l '/etc/systemd/system/multi-user.target.wants/kubedos-ready.service' '/etc/systemd/system/kubedos-ready.service'");
  expect(added).not.toContain("'/etc/fstab'");
});

test('the source ISO is checked against its sha256 before use, by path and by URL (downloaded once, cached)', async () => {
  const wrong = { ...plan, image: { ...plan.image, installerIso: { source: mini.path, sha256: '0'.repeat(64) } } };
  await expect(reproduceFormats(img, wrong, ['installer-media'], path.join(dir, 'wrong'))).rejects.toThrow(
    new BuildFailedError(`installer ISO ${mini.path} has sha256 ${mini.sha256}, but the spec names ${'0'.repeat(64)}`),
  );
  const server = http.createServer((req, res) => {
    if (req.url !== '/debian-12-mini.iso') return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    void fs.readFile(mini.path).then((b) => res.end(b));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/debian-12-mini.iso`;
  const cached = path.join(img.cacheDir, 'installer-iso', `${mini.sha256}.iso`);
  try {
    await fs.rm(cached, { force: true });
    const badUrl = { ...plan, image: { ...plan.image, installerIso: { source: url, sha256: 'f'.repeat(64) } } };
    await expect(reproduceFormats(img, badUrl, ['installer-media'], path.join(dir, 'bad-url'))).rejects.toThrow(/has sha256 .* but the spec names f{64}/);
    await expect(fs.access(path.join(img.cacheDir, 'installer-iso', `${'f'.repeat(64)}.iso`))).rejects.toThrow();
    const byUrl = { ...plan, image: { ...plan.image, installerIso: { source: url, sha256: mini.sha256 } } };
    const [artifact] = await reproduceFormats(img, byUrl, ['installer-media'], path.join(dir, 'by-url'));
    expect(digest(await fs.readFile(cached))).toBe(mini.sha256);
    // The same ISO bytes by another way: the same media.
    expect(artifact!.sha256).toBe(mediaSha256);
  } finally {
    server.close();
    await fs.rm(cached, { force: true });
  }
});

test('source debian-mini: the Foundry assembles the media itself, pinned by sha256 like any ISO', async () => {
  const cached = path.join(img.cacheDir, 'installer-iso', `${mini.sha256}.iso`);
  await fs.rm(cached, { force: true });
  const pinned = (sha256: string): BuildPlan => ({ ...plan, image: { ...plan.image, installerIso: { source: 'debian-mini', sha256 } } });
  await expect(reproduceFormats(img, pinned('e'.repeat(64)), ['installer-media'], path.join(dir, 'mini-wrong'))).rejects.toThrow(
    new RegExp(`installer media assembled from debian-installer-12-netboot-amd64 \\(.+\\) has sha256 ${mini.sha256}, but installerIso.sha256 pins e{64}`),
  );
  await expect(fs.access(path.join(img.cacheDir, 'installer-iso', `${'e'.repeat(64)}.iso`))).rejects.toThrow();
  try {
    const [artifact] = await reproduceFormats(img, pinned(mini.sha256), ['installer-media'], path.join(dir, 'mini-assembled'));
    expect(digest(await fs.readFile(cached))).toBe(mini.sha256);
    expect(artifact!.sha256).toBe(mediaSha256);
  } finally {
    await fs.rm(cached, { force: true });
  }
});

/** Watch d-i until it has read the preseed and reached network detection (or power-off, or time out). */
async function bootInstaller(firmware: 'bios' | Awaited<ReturnType<typeof ovmf>>): Promise<WatchResult> {
  const marker = preseedLoadedLine(plan.image.name, img.manifest.inputDigest);
  return bootAndWatch(
    dir,
    { firmware, cdrom: media, boot: 'cdrom' },
    { until: (c) => c.includes(marker) && c.slice(c.indexOf(marker)).includes('Detecting network hardware'), timeoutMs: 25 * 60 * 1000 },
  );
}

function expectPreseedRead(r: WatchResult): void {
  if (!r.matched) console.log(r.console.slice(-4000));
  expect(r.matched).toBe(true);
  expect(r.console).toContain('auto=true priority=critical');
  for (const q of EARLY_QUESTIONS) expect(r.console).not.toContain(q);
}

test('BIOS (SeaBIOS, isolinux): d-i reads the preseed and skips to network detection, no language question', async () => {
  const r = await bootInstaller('bios');
  console.log(`installer media (BIOS, TCG) to network detection: ${r.ms} ms`);
  expectPreseedRead(r);
  expect(r.console).toContain('Loading /kubedos/initrd.gz');
});

test('UEFI (OVMF, GRUB): d-i reads the preseed and skips to network detection, no language question', async () => {
  const r = await bootInstaller(await ovmf(dir));
  console.log(`installer media (UEFI, TCG) to network detection: ${r.ms} ms`);
  expectPreseedRead(r);
  expect(r.console).toContain("Booting `Automated install of kubedos-test");
});

test('a second production gives the same digest', async () => {
  const [again] = await reproduceFormats(img, plan, ['installer-media'], path.join(dir, 'again'));
  expect(again!.sha256).toBe(mediaSha256);
});
