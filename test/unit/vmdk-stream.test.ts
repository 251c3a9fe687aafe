/**
 * The parallel streamOptimized writer against qemu-img's own single-pass file: the same bytes, for
 * any number of parts, on a disk with incompressible and compressible grains, all-zero grains
 * inside data, holes, a half-written grain and data in the last grain.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { balancedCuts, writeStreamOptimizedVmdk } from '../../src/foundry/vmdk-stream';
import { qemuImgConvertArgv } from '../../src/foundry/tools/qemu-img';
import { fixVmdkCid } from '../../src/foundry/formats/vmdk';

const MiB = 1024 * 1024;
const GRAIN = 64 * 1024;
const OPTIONS = { subformat: 'streamOptimized', adapter_type: 'lsilogic' };
let tmp: string;

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-vmdk-stream-'));
});
afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

async function disk(name: string, size: number): Promise<string> {
  const file = path.join(tmp, name);
  const fh = await fs.open(file, 'w');
  try {
    await fh.truncate(size);
    await fh.write(randomBytes(3 * MiB), 0, 3 * MiB, 1 * MiB); // incompressible
    await fh.write(Buffer.from('kubedos '.repeat(MiB / 8)), 0, MiB, 9 * MiB); // compressible
    await fh.write(Buffer.alloc(2 * MiB), 0, 2 * MiB, 12 * MiB); // written zeros: allocated, yet zero grains
    await fh.write(randomBytes(GRAIN / 2), 0, GRAIN / 2, 33 * MiB + GRAIN); // half a grain
    await fh.write(randomBytes(5 * MiB), 0, 5 * MiB, 40 * MiB + 3 * GRAIN);
    await fh.write(randomBytes(4096), 0, 4096, size - 4096); // the last grain
  } finally {
    await fh.close();
  }
  return file;
}

/** qemu-img's file for the disk, under `name` in a directory of its own (the descriptor names the file). */
function qemuImgFile(raw: string, dir: string, name: string): string {
  const out = path.join(dir, name);
  const [cmd, ...args] = qemuImgConvertArgv({ source: raw, sourceFormat: 'raw', dest: out, destFormat: 'vmdk', options: OPTIONS });
  execFileSync(cmd!, args);
  return out;
}

/**
 * The descriptor's CID is random in both, printed in 1 to 8 hex digits: compare as the Foundry
 * publishes them, the whole descriptor rewritten with a content-derived CID (fixVmdkCid).
 */
async function asPublished(f: string): Promise<Buffer> {
  await fixVmdkCid(f);
  return fs.readFile(f);
}

test.each([1, 2, 3, 5])('%i part(s) give the bytes qemu-img writes in one pass', async (parts) => {
  const raw = await disk(`disk-${parts}.raw`, 64 * MiB);
  const dirA = await fs.mkdtemp(path.join(tmp, 'qemu-'));
  const dirB = await fs.mkdtemp(path.join(tmp, 'parallel-'));
  const expected = qemuImgFile(raw, dirA, 'disk.vmdk');
  const actual = path.join(dirB, 'disk.vmdk');
  await writeStreamOptimizedVmdk(raw, actual, { parts, createOptions: { adapter_type: 'lsilogic' } });
  const [a, b] = await Promise.all([asPublished(expected), asPublished(actual)]);
  expect(b.length).toBe(a.length);
  expect(b.equals(a)).toBe(true);
  // qemu-img reads it back as the disk, and nothing but the result is left behind.
  execFileSync('qemu-img', ['compare', '-q', '-f', 'raw', '-F', 'vmdk', raw, actual]);
  expect(await fs.readdir(dirB)).toEqual(['disk.vmdk']);
});

test('a disk whose size is not a whole number of grains is one part, still qemu-img bytes', async () => {
  const raw = await disk('odd.raw', 20 * MiB + 512);
  const expected = qemuImgFile(raw, await fs.mkdtemp(path.join(tmp, 'qemu-')), 'odd.vmdk');
  const actual = path.join(await fs.mkdtemp(path.join(tmp, 'parallel-')), 'odd.vmdk');
  await writeStreamOptimizedVmdk(raw, actual, { parts: 4, createOptions: { adapter_type: 'lsilogic' } });
  expect((await asPublished(actual)).equals(await asPublished(expected))).toBe(true);
});

test('the same disk gives the same file whatever the part count', async () => {
  const raw = await disk('same.raw', 48 * MiB);
  const digests = new Set<string>();
  for (const parts of [1, 2, 4]) {
    const out = path.join(await fs.mkdtemp(path.join(tmp, `p${parts}-`)), 'same.vmdk');
    await writeStreamOptimizedVmdk(raw, out, { parts, createOptions: { adapter_type: 'lsilogic' } });
    digests.add(createHash('sha256').update(await asPublished(out)).digest('hex'));
  }
  expect(digests.size).toBe(1);
});

test('cancelled: it rejects and leaves nothing beside the output', async () => {
  const raw = await disk('cancel.raw', 64 * MiB);
  const dir = await fs.mkdtemp(path.join(tmp, 'cancel-'));
  const controller = new AbortController();
  const writing = writeStreamOptimizedVmdk(raw, path.join(dir, 'cancel.vmdk'), { parts: 2, signal: controller.signal });
  setTimeout(() => controller.abort(), 50);
  await expect(writing).rejects.toThrow();
  expect(await fs.readdir(dir)).toEqual([]);
});

test('cuts are grain-aligned, ascending, and split the allocated bytes evenly', () => {
  const extents: [number, number][] = [
    [0, 10 * GRAIN],
    [100 * GRAIN, 130 * GRAIN + 17],
  ];
  const cuts = balancedCuts(extents, 200 * GRAIN, 4, GRAIN);
  expect(cuts.every((c) => c % GRAIN === 0)).toBe(true);
  expect([...cuts].sort((a, b) => a - b)).toEqual(cuts);
  expect(cuts).toEqual([100 * GRAIN, 110 * GRAIN, 120 * GRAIN]); // 40 grains of data: 10 per part
  expect(balancedCuts([], 200 * GRAIN, 4, GRAIN)).toEqual([]);
});
