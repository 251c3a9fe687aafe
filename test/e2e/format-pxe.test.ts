/**
 * The pxe bundle of the shared test image (test/support/images.ts): four files, the iPXE script
 * naming the others relative to itself, the root squashfs in a one-file cpio; booted by QEMU's
 * built-in iPXE (SeaBIOS) over user-mode networking, the output directory as the TFTP root and
 * the script as the DHCP boot file, to the readiness line. A second production gives the same
 * digests.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { pxeFiles } from '../../src/foundry/formats/pxe';
import { LIVE_PATHS } from '../../src/foundry/live';
import { sha256File } from '../../src/foundry/lock';
import { xorrisoExtract } from '../../src/foundry/tools/xorriso';
import { bootAndWatch, ovmf } from '../support/media-boot';
import { expectReproduced } from '../support/format-context';
import { builtImage, TEST_PLAN, type BuiltImage } from '../support/images';

jest.setTimeout(90 * 60 * 1000);

const READY = `kubedos: ready ${TEST_PLAN.image.hostname}`;
const files = pxeFiles(TEST_PLAN.image);
let img: BuiltImage;
let dir: string;
const at = (name: string) => path.join(img.dir, name);

beforeAll(async () => {
  img = await builtImage();
  if (img.result) console.log(`test image built in ${img.result.totalMs} ms`, img.result.timings);
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-pxe-'));
});

afterAll(async () => {
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

/** The members of a newc cpio archive (name, mode, data offset and size). */
async function cpioMembers(file: string): Promise<{ name: string; mode: number; offset: number; size: number }[]> {
  const fh = await fs.open(file, 'r');
  const out: { name: string; mode: number; offset: number; size: number }[] = [];
  try {
    let pos = 0;
    for (;;) {
      const h = Buffer.alloc(110);
      await fh.read(h, 0, 110, pos);
      expect(h.subarray(0, 6).toString('latin1')).toBe('070701');
      const field = (i: number) => parseInt(h.subarray(6 + i * 8, 14 + i * 8).toString('latin1'), 16);
      const nameSize = field(11);
      const size = field(6);
      const nameBuf = Buffer.alloc(nameSize);
      await fh.read(nameBuf, 0, nameSize, pos + 110);
      const name = nameBuf.subarray(0, nameSize - 1).toString();
      const offset = Math.ceil((pos + 110 + nameSize) / 4) * 4;
      if (name === 'TRAILER!!!') return out;
      out.push({ name, mode: field(1), offset, size });
      pos = Math.ceil((offset + size) / 4) * 4;
    }
  } finally {
    await fh.close();
  }
}

test('four artifacts of format pxe, the iPXE script first, each digested', async () => {
  const entries = img.manifest.artifacts.filter((a) => a.format === 'pxe');
  expect(entries.map((a) => a.file)).toEqual([files.script, files.kernel, files.initrd, files.root]);
  for (const e of entries) {
    expect((await fs.stat(at(e.file))).size).toBe(e.size);
    expect(await sha256File(at(e.file))).toBe(e.sha256);
  }
});

test('the script loads the kernel and both initrds by names relative to itself', async () => {
  const script = await fs.readFile(at(files.script), 'utf8');
  expect(script.startsWith('#!ipxe\n')).toBe(true);
  const commands = script.split('\n').filter((l) => l && !l.startsWith('#'));
  expect(commands).toEqual([
    expect.stringMatching(new RegExp(`^kernel ${files.kernel} initrd=${files.initrd} initrd=${files.root} boot=kubedos kubedos\\.root=${LIVE_PATHS.initramfsRoot} no_timer_check console=`)),
    `initrd ${files.initrd}`,
    `initrd ${files.root}`,
    'boot',
  ]);
});

test("root: one squashfs in a newc cpio at the path the script names, the same squashfs as the ISO's live root", async () => {
  const members = await cpioMembers(at(files.root));
  expect(members.map((m) => [m.name, m.mode.toString(8)])).toEqual([
    ['kubedos', '40755'],
    ['kubedos/root.squashfs', '100644'],
  ]);
  const sfs = members[1]!;
  const magic = Buffer.alloc(4);
  const fh = await fs.open(at(files.root), 'r');
  await fh.read(magic, 0, 4, sfs.offset);
  await fh.close();
  expect(magic.toString('latin1')).toBe('hsqs');
  const isoRoot = path.join(dir, 'iso-root.squashfs');
  await xorrisoExtract(img.artifacts.iso!, [{ iso: LIVE_PATHS.root, host: isoRoot }]);
  expect((await fs.stat(isoRoot)).size).toBe(sfs.size);
  const { createHash } = await import('node:crypto');
  const { createReadStream } = await import('node:fs');
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(at(files.root), { start: sfs.offset, end: sfs.offset + sfs.size - 1 })) hash.update(chunk as Buffer);
  expect(hash.digest('hex')).toBe(await sha256File(isoRoot));
});

test("boots with QEMU's iPXE (SeaBIOS) over user-mode networking, TFTP from the output directory, to ready", async () => {
  const r = await bootAndWatch(
    dir,
    { firmware: 'bios', net: { tftpDir: img.dir, bootfile: files.script }, boot: 'network' },
    { until: (c) => c.includes(READY), timeoutMs: 25 * 60 * 1000 },
  );
  console.log(`pxe boot (iPXE over TFTP, BIOS, TCG) to ready: ${r.ms} ms`);
  if (!r.matched) console.log(r.console.slice(-4000));
  expect(r.matched).toBe(true);
  expect(r.console).toContain(`kubedos: live root: ${LIVE_PATHS.initramfsRoot} (squashfs) under a tmpfs overlay`);
  expect(r.console).toContain('kubedos: hello from first boot');
});

test("boots with QEMU's iPXE under OVMF (UEFI): the kernel's EFI stub loads both initrds named on its command line", async () => {
  // Under UEFI the initrds are in memory three times while the kernel starts (iPXE's copies, the
  // EFI stub's, the unpacked squashfs): 1 GiB is too little for this image's ~190 MB root, 2 GiB is enough.
  const r = await bootAndWatch(
    dir,
    { firmware: await ovmf(dir), memoryMiB: 2048, net: { tftpDir: img.dir, bootfile: files.script }, boot: 'network' },
    { until: (c) => c.includes(READY), timeoutMs: 25 * 60 * 1000 },
  );
  console.log(`pxe boot (iPXE over TFTP, UEFI, TCG) to ready: ${r.ms} ms`);
  if (!r.matched) console.log(r.console.slice(-4000));
  expect(r.matched).toBe(true);
  expect(r.console).toContain('EFI stub: Loaded initrd from command line option');
  expect(r.console).toContain(`kubedos: live root: ${LIVE_PATHS.initramfsRoot} (squashfs) under a tmpfs overlay`);
});

test('a second production of the bundle gives the same digests', async () => {
  await expectReproduced(img, ['pxe'], path.join(dir, 'again'));
});
