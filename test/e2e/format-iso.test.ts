/**
 * The iso format of the shared test image (test/support/images.ts): its boot records and files,
 * the live root squashfs against the disk it comes from, and two boots under TCG: live from the
 * CD-ROM under OVMF (UEFI); the installer entry under SeaBIOS (BIOS), typed at the isolinux
 * prompt, writing the raw image to an empty disk and powering off, then that disk booting (UEFI).
 * A second production gives the same digest.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { createSparseFile, sha256SparseFile } from '../../src/foundry/files';
import { iso, isoVolumeId } from '../../src/foundry/formats/iso';
import { parseElTorito, parseFindOutput } from '../../src/foundry/installer-media';
import { LIVE_PATHS } from '../../src/foundry/live';
import { sha256File } from '../../src/foundry/lock';
import { unsquashfsExtract, unsquashfsList } from '../../src/foundry/tools/mksquashfs';
import { xorrisoExtract, xorrisoFindFiles, xorrisoReport } from '../../src/foundry/tools/xorriso';
import { bootAndWatch, ovmf } from '../support/media-boot';
import { expectReproduced } from '../support/format-context';
import { builtImage, TEST_PLAN, type BuiltImage } from '../support/images';

jest.setTimeout(90 * 60 * 1000);

const READY = `kubedos: ready ${TEST_PLAN.image.hostname}`;
const BOOT_TIMEOUT_MS = 20 * 60 * 1000;
let img: BuiltImage;
let dir: string;
let isoFile: string;

beforeAll(async () => {
  img = await builtImage();
  if (img.result) console.log(`test image built in ${img.result.totalMs} ms`, img.result.timings);
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-iso-'));
  isoFile = img.artifacts.iso!;
});

afterAll(async () => {
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

test('one artifact of format iso, listed in the manifest with its digest', async () => {
  const entries = img.manifest.artifacts.filter((a) => a.format === 'iso');
  expect(entries.map((a) => a.file)).toEqual([iso.fileName(TEST_PLAN.image)]);
  expect((await fs.stat(isoFile)).size).toBe(entries[0]!.size);
  expect(await sha256File(isoFile)).toBe(entries[0]!.sha256);
});

test('boot records: isolinux (BIOS) and a FAT image (UEFI), isohybrid MBR and GPT, the derived volume id', async () => {
  const { stdout } = await xorrisoReport(isoFile);
  expect(parseElTorito(stdout).map((i) => [i.platform, i.path])).toEqual([
    ['BIOS', '/isolinux/isolinux.bin'],
    ['UEFI', '/boot/grub/efi.img'],
  ]);
  expect(stdout).toMatch(new RegExp(`^Volume Id\\s*:\\s*${isoVolumeId(img.manifest.inputDigest)}\\s*$`, 'm'));
  const head = Buffer.alloc(1024);
  const fh = await fs.open(isoFile, 'r');
  await fh.read(head, 0, head.length, 0);
  await fh.close();
  expect(head.readUInt16LE(510)).toBe(0xaa55); // MBR (isohybrid) for BIOS boot from a USB stick
  expect(head.subarray(512, 520).toString('latin1')).toBe('EFI PART'); // GPT with the EFI image as a partition
  const files = parseFindOutput((await xorrisoFindFiles(isoFile)).stdout);
  for (const f of Object.values(LIVE_PATHS).filter((p) => p !== LIVE_PATHS.initramfsRoot)) expect(files).toContain(f);
  expect(files).toContain('/isolinux/isolinux.cfg');
  expect(files).toContain('/boot/grub/grub.cfg');
});

test('live root squashfs: the disk root filesystem with its payload, setuid/setgid bits and private modes kept', async () => {
  const sfs = path.join(dir, 'root.squashfs');
  await xorrisoExtract(isoFile, [{ iso: LIVE_PATHS.root, host: sfs }]);
  const listing = (await unsquashfsList(sfs)).stdout;
  const entry = (p: string) => listing.split('\n').find((l) => l.endsWith(` squashfs-root${p}`) || l.includes(` squashfs-root${p} -> `));
  expect(entry('/usr/bin/passwd')).toMatch(/^-rwsr-xr-x 0\/0 /);
  expect(entry('/usr/bin/chage')).toMatch(/^-rwxr-sr-x 0\/42 /);
  expect(entry('/var/mail')).toMatch(/^drwxrwsr-x 0\/8 /);
  expect(entry('/tmp')).toMatch(/^drwxrwxrwt 0\/0 /);
  expect(entry('/root/.ssh/authorized_keys')).toMatch(/^-rw------- 0\/0 /);
  expect(entry('/etc/systemd/system/multi-user.target.wants/kubedos-ready.service')).toMatch(/^lrwxrwxrwx .* -> \/etc\/systemd\/system\/kubedos-ready\.service$/);
  expect(listing).not.toMatch(/ssh_host_/);
  const out = path.join(dir, 'extracted');
  await unsquashfsExtract(sfs, out, ['/etc/hostname', '/etc/kubedos/role', '/root/.ssh/authorized_keys', '/etc/machine-id']);
  expect(await fs.readFile(path.join(out, 'etc/hostname'), 'utf8')).toBe(`${TEST_PLAN.image.hostname}\n`);
  expect(await fs.readFile(path.join(out, 'etc/kubedos/role'), 'utf8')).toBe('worker\n');
  expect(await fs.readFile(path.join(out, 'root/.ssh/authorized_keys'), 'utf8')).toContain('kubedos-test');
  expect((await fs.stat(path.join(out, 'etc/machine-id'))).size).toBe(0);
});

test('boots live from the CD-ROM under OVMF (UEFI) to "kubedos: ready", root from the squashfs', async () => {
  const r = await bootAndWatch(dir, { firmware: await ovmf(dir), cdrom: isoFile, boot: 'cdrom' }, { until: (c) => c.includes(READY), timeoutMs: BOOT_TIMEOUT_MS });
  console.log(`iso live boot (UEFI, TCG) to ready: ${r.ms} ms`);
  if (!r.matched) console.log(r.console.slice(-4000));
  expect(r.matched).toBe(true);
  expect(r.console).toContain(`kubedos: live root: ${LIVE_PATHS.root} (squashfs) under a tmpfs overlay`);
  expect(r.console).toContain('kubedos: hello from first boot');
});

test('installer entry under SeaBIOS (BIOS): writes the raw image to the empty disk, powers off; that disk boots (UEFI) to ready', async () => {
  const target = path.join(dir, 'target.raw');
  await createSparseFile(target, TEST_PLAN.image.diskSizeBytes);
  const install = await bootAndWatch(
    dir,
    { firmware: 'bios', cdrom: isoFile, disks: [{ file: target, format: 'raw' }], boot: 'cdrom' },
    { until: () => false, timeoutMs: BOOT_TIMEOUT_MS, type: { after: 'boot:', keys: 'install\r' } },
  );
  console.log(`iso install (BIOS, TCG) to power-off: ${install.ms} ms (typed at ${install.typedAtMs} ms)`);
  if (!install.exited) console.log(install.console.slice(-4000));
  expect(install.typedAtMs).toBeDefined();
  expect(install.exited).toBe(true);
  expect(install.console).toContain(`kubedos: installing the disk image (${TEST_PLAN.image.diskSizeBytes} bytes) to /dev/vda`);
  expect(install.console).toContain('kubedos: installed to /dev/vda; powering off');
  expect(install.console).not.toContain('kubedos: live root');
  const raw = img.manifest.artifacts.find((a) => a.format === 'raw')!;
  expect(await sha256SparseFile(target)).toBe(raw.sha256);

  const boot = await bootAndWatch(
    dir,
    { firmware: await ovmf(dir), disks: [{ file: target, format: 'raw', snapshot: true }], boot: 'disk' },
    { until: (c) => c.includes(READY), timeoutMs: BOOT_TIMEOUT_MS },
  );
  console.log(`installed disk boot (UEFI, TCG) to ready: ${boot.ms} ms`);
  if (!boot.matched) console.log(boot.console.slice(-4000));
  expect(boot.matched).toBe(true);
});

test('a second production of the iso gives the same digest', async () => {
  await expectReproduced(img, ['iso'], path.join(dir, 'again'));
});
