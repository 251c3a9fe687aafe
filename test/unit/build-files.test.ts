/** Sparse-aware digests: holes are hashed as zeros without being read; the digest is the file's. */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseExtents, sha256SparseFile } from '../../src/foundry/files';
import { sha256File } from '../../src/foundry/lock';

let dir: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-files-'));
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

async function sparseFile(name: string, size: number, writes: [number, string][]): Promise<string> {
  const file = path.join(dir, name);
  const fh = await fs.open(file, 'w');
  await fh.truncate(size);
  for (const [at, text] of writes) await fh.write(Buffer.from(text), 0, text.length, at);
  await fh.close();
  return file;
}

test.each([
  ['empty', 0, []],
  ['all hole', 5 * 1024 * 1024 + 17, []],
  ['data at both ends and in the middle', 9 * 1024 * 1024 + 3, [[0, 'head'], [4 * 1024 * 1024 + 5, 'middle'], [9 * 1024 * 1024 - 1, 'tail']]],
  ['no holes', 3, [[0, 'abc']]],
] as [string, number, [number, string][]][])('%s', async (name, size, writes) => {
  const file = await sparseFile(name.replace(/\s/g, '-'), size, writes);
  const expected = createHash('sha256').update(await fs.readFile(file)).digest('hex');
  expect(await sha256SparseFile(file)).toBe(expected);
  expect(await sha256File(file)).toBe(expected);
});

test('extent lines are checked and clamped to the file size', () => {
  expect(parseExtents('0 4096\n8192 12288\n', 10000)).toEqual([[0, 4096], [8192, 10000]]);
  expect(() => parseExtents('8192 4096\n', 10000)).toThrow(/unexpected line/);
  expect(() => parseExtents('4096 8192\n0 10\n', 10000)).toThrow(/unexpected line/);
});
