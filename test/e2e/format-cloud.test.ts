/**
 * The cloud formats of the shared test image (test/support/images.ts), each checked against its
 * provider's documented import rules with the tools an operator would use (qemu-img, GNU tar,
 * sfdisk, mtools, debugfs), and produced a second time from the same layer and disk to prove the
 * bytes do not change.
 */
import { spawnSync } from 'node:child_process';
import { openSync, readSync, closeSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { formatNamed } from '../../src/foundry';
import { diskLayout, ESP_TYPE, ROOT_X86_64_TYPE } from '../../src/foundry/disk';
import { sha256SparseFile } from '../../src/foundry/files';
import { parseVhdFooter } from '../../src/foundry/formats/azure';
import { initrdMembers, moduleName } from '../../src/foundry/initrd';
import { sha256File } from '../../src/foundry/lock';
import { debugfsRequest } from '../../src/foundry/tools/debugfs';
import { mdir } from '../../src/foundry/tools/mtools';
import { qemuImgInfo } from '../../src/foundry/tools/qemu-img';
import { sfdiskDump } from '../../src/foundry/tools/sfdisk';
import { expectReproduced } from '../support/format-context';
import { builtImage, TEST_PLAN, type BuiltImage } from '../support/images';

jest.setTimeout(30 * 60 * 1000);

const MiB = 2 ** 20;
const GiB = 2 ** 30;
let img: BuiltImage;
let scratch: string;
const rawSize = TEST_PLAN.image.diskSizeBytes;

beforeAll(async () => {
  img = await builtImage();
  scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-cloud-'));
});
afterAll(() => fs.rm(scratch, { recursive: true, force: true }));

function run(argv: string[]): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', env: { ...process.env, TZ: 'UTC', LC_ALL: 'C' }, maxBuffer: 64 * MiB });
  if (r.status !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

describe.each(['ami', 'azure', 'gce'] as const)('%s', (format) => {
  test('is one artifact, named by the registry, digested, in the manifest', async () => {
    const entries = img.manifest.artifacts.filter((a) => a.format === format);
    expect(entries.map((e) => e.file)).toEqual([formatNamed(format).fileName(TEST_PLAN.image)]);
    expect(await sha256File(path.join(img.dir, entries[0]!.file))).toBe(entries[0]!.sha256);
  });
});

describe('ami (AWS VM Import: streamOptimized VMDK, UEFI boot mode, NVMe + ENA)', () => {
  test('qemu-img sees a streamOptimized VMDK with the disk\'s exact size and content', async () => {
    const info = JSON.parse((await qemuImgInfo(img.artifacts.ami!, 'vmdk')).stdout) as { 'virtual-size': number; 'format-specific': { data: { 'create-type': string } } };
    expect(info['virtual-size']).toBe(rawSize);
    expect(info['format-specific'].data['create-type']).toBe('streamOptimized');
    expect(run(['qemu-img', 'compare', '-f', 'vmdk', '-F', 'raw', img.artifacts.ami!, img.artifacts.raw!])).toContain('Images are identical');
  });
  test('UEFI-bootable layout: GPT with an EFI system partition holding \\EFI\\BOOT\\BOOTX64.EFI, and a root partition', async () => {
    const dump = (await sfdiskDump(img.artifacts.raw!)).stdout;
    expect(dump).toMatch(/^label: gpt$/m);
    expect(dump).toContain(`type=${ESP_TYPE}`);
    expect(dump).toContain(`type=${ROOT_X86_64_TYPE}`);
    const layout = diskLayout(rawSize, img.manifest.inputDigest);
    const listing = (await mdir(`${img.artifacts.raw!}@@${layout.esp.offset}`, '/EFI/BOOT')).stdout;
    expect(listing).toMatch(/BOOTX64\s+EFI/);
  });
  test('the image ships ENA and NVMe drivers, and its initramfs loads them', async () => {
    const layout = diskLayout(rawSize, img.manifest.inputDigest);
    const root = `${img.artifacts.raw!}?offset=${layout.root.offset}`;
    const boot = (await debugfsRequest(root, 'ls -p /boot')).stdout;
    const initrdName = /\/(initrd\.img-[^/]+)\//.exec(boot)![1]!;
    const kver = initrdName.replace('initrd.img-', '');
    const modules = (await debugfsRequest(root, `cat /usr/lib/modules/${kver}/modules.dep`)).stdout;
    expect(modules).toMatch(/drivers\/net\/ethernet\/amazon\/ena\/ena\.ko:/);
    expect(modules).toMatch(/drivers\/nvme\/host\/nvme\.ko:/);
    const initrd = path.join(scratch, initrdName);
    await debugfsRequest(root, `dump /boot/${initrdName} ${initrd}`);
    const names = new Set((await initrdMembers(initrd, path.join(scratch, 'initrd-list'))).map(moduleName));
    for (const m of ['ena', 'nvme', 'hv_vmbus', 'hv_storvsc', 'hv_netvsc', 'virtio_scsi', 'gve']) expect(names).toContain(m);
  });
});

describe('azure (fixed VHD, virtual size a whole number of MiB)', () => {
  test('the footer says fixed, with a valid checksum and the exact size; the file is the disk plus 512 bytes', async () => {
    const file = img.artifacts.azure!;
    const st = await fs.stat(file);
    const fd = openSync(file, 'r');
    const footer = Buffer.alloc(512);
    readSync(fd, footer, 0, 512, st.size - 512);
    closeSync(fd);
    const f = parseVhdFooter(footer);
    expect(f.cookie).toBe('conectix');
    expect(f.diskType).toBe(2); // fixed
    expect(f.checksumOk).toBe(true);
    expect(f.currentSize).toBe(rawSize);
    expect(f.originalSize).toBe(rawSize);
    expect(f.currentSize % MiB).toBe(0);
    expect(st.size).toBe(f.currentSize + 512);
    expect(f.timestamp).toBe(TEST_PLAN.sourceDateEpoch - 946684800);
  });
  test('qemu-img reads it as vpc with the same virtual size and content as the raw disk', async () => {
    const info = JSON.parse((await qemuImgInfo(img.artifacts.azure!, 'vpc')).stdout) as { 'virtual-size': number };
    expect(info['virtual-size']).toBe(rawSize);
    expect(run(['qemu-img', 'compare', '-f', 'vpc', '-F', 'raw', img.artifacts.azure!, img.artifacts.raw!])).toContain('Images are identical');
  });
});

describe('gce (disk.raw in a gzip\'d old-GNU sparse tar, a whole number of GiB)', () => {
  test('gzip without name or time stamp; a tar whose one member is disk.raw, type S, oldgnu magic', async () => {
    const gz = await fs.readFile(img.artifacts.gce!);
    expect(gz.subarray(0, 3)).toEqual(Buffer.from([0x1f, 0x8b, 0x08]));
    expect(gz[3]! & 0x08).toBe(0); // no FNAME
    expect(gz.readUInt32LE(4)).toBe(0); // no MTIME
    const tar = gunzipSync(gz);
    expect(tar.length % 10240).toBe(0);
    expect(tar.toString('latin1', 0, 9)).toBe('disk.raw\0');
    expect(tar.toString('latin1', 156, 157)).toBe('S');
    expect(tar.toString('latin1', 257, 265)).toBe('ustar  \0');
    const listing = run(['tar', '--list', '--verbose', '--numeric-owner', '--full-time', '-zf', img.artifacts.gce!]).trim().split('\n');
    expect(listing).toHaveLength(1);
    expect(listing[0]).toMatch(new RegExp(`^-rw-r--r-- 0/0 +${rawSize} 2023-11-14 22:13:20 disk\\.raw$`));
    expect(rawSize % GiB).toBe(0);
  });
  test('GNU tar extracts disk.raw sparse and bit-identical to the raw disk', async () => {
    const out = path.join(scratch, 'gce');
    await fs.mkdir(out);
    run(['tar', '--extract', '--sparse', '-zf', img.artifacts.gce!, '-C', out]);
    const disk = path.join(out, 'disk.raw');
    expect(await sha256SparseFile(disk)).toBe(img.manifest.artifacts.find((a) => a.format === 'raw')!.sha256);
    const st = await fs.stat(disk);
    expect(st.blocks * 512).toBeLessThan(st.size / 2);
    await fs.rm(out, { recursive: true, force: true });
  });
});

test('ami, azure and gce produced again from the same layer and disk are bit-identical', async () => {
  await expectReproduced(img, ['ami', 'azure', 'gce'], path.join(scratch, 'again'));
});
