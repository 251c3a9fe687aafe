/** The local content-addressed store: verified, sparse-preserving getFile; listing; refs. */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CancelledError, DigestMismatchError, StoreError } from '../../src/errors';
import { LocalStore } from '../../src/store/local';
import { sha256OfFile } from '../../src/store/transfer';

const MiB = 1024 * 1024;
let tmp: string;

beforeEach(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-local-store-'));
});
afterEach(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

async function sparseFile(file: string, size: number): Promise<void> {
  const handle = await fs.open(file, 'w');
  await handle.truncate(size);
  const block = Buffer.alloc(MiB);
  for (let i = 0; i < block.length; i += 32) createHash('sha256').update(String(i)).digest().copy(block, i);
  await handle.write(block, 0, block.length, 0);
  await handle.write(block, 0, block.length, size - MiB - 17);
  await handle.close();
}

test('getFile writes the verified blob, keeps holes, and reports progress', async () => {
  const store = new LocalStore(path.join(tmp, 'store'));
  const src = path.join(tmp, 'disk.img');
  await sparseFile(src, 256 * MiB);
  const put = await store.putFile(src);
  expect(put).toMatchObject({ size: 256 * MiB, existed: false });
  expect((await store.putFile(src, { link: true })).existed).toBe(true);

  const dest = path.join(tmp, 'out', 'disk.img');
  let last = 0;
  const got = await store.getFile(put.sha256, dest, { onProgress: (p) => (last = p.bytes) });
  expect(got).toEqual({ sha256: put.sha256, size: 256 * MiB });
  expect(last).toBe(256 * MiB);
  const st = await fs.stat(dest);
  expect(st.size).toBe(256 * MiB);
  expect(st.blocks * 512).toBeLessThan(16 * MiB);
  expect((await sha256OfFile(dest)).sha256).toBe(put.sha256);
  // The copy made by putFile (no link) is sparse too.
  expect((await fs.stat(store.localPath(put.sha256))).blocks * 512).toBeLessThan(16 * MiB);
});

test('a flipped byte in the store is refused by getFile; nothing appears at dest', async () => {
  const store = new LocalStore(path.join(tmp, 'store'));
  const blob = await store.putBytes(Buffer.alloc(100_000, 3));
  const file = store.localPath(blob.sha256);
  await fs.chmod(file, 0o644);
  const handle = await fs.open(file, 'r+');
  await handle.write(Buffer.from([4]), 0, 1, 5000);
  await handle.close();

  const dest = path.join(tmp, 'dest.bin');
  await fs.writeFile(dest, 'previous content');
  const err = await store.getFile(blob.sha256, dest).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(DigestMismatchError);
  expect((err as Error).message).toContain(file);
  expect(await fs.readFile(dest, 'utf8')).toBe('previous content'); // untouched
  expect((await fs.readdir(tmp)).sort()).toEqual(['dest.bin', 'store']); // no temp left over
  await expect(store.verifyBlob(blob.sha256)).rejects.toBeInstanceOf(DigestMismatchError);
  await expect(store.getFile('0'.repeat(64), dest)).rejects.toBeInstanceOf(StoreError);
});

test('a cancelled getFile leaves nothing behind', async () => {
  const store = new LocalStore(path.join(tmp, 'store'));
  const src = path.join(tmp, 'big.img');
  await sparseFile(src, 64 * MiB);
  const put = await store.putFile(src);
  const controller = new AbortController();
  const dest = path.join(tmp, 'cancelled.img');
  const p = store.getFile(put.sha256, dest, { signal: controller.signal, onProgress: (x) => x.bytes > 8 * MiB && controller.abort() });
  await expect(p).rejects.toBeInstanceOf(CancelledError);
  expect((await fs.readdir(tmp)).sort()).toEqual(['big.img', 'store']);
});

test('blobs and refs are listed and removed', async () => {
  const store = new LocalStore(path.join(tmp, 'store'));
  const a = await store.putBytes('a');
  const b = await store.putBytes('b');
  expect((await store.listBlobs()).map((x) => x.sha256)).toEqual([a.sha256, b.sha256].sort());
  await store.setRef('images/web/latest', a.sha256);
  await store.setRef('pins/golden', b.sha256);
  expect(await store.listRefs()).toEqual(['images/web/latest', 'pins/golden']);
  expect(await store.listRefs('pins/')).toEqual(['pins/golden']);
  await store.deleteRef('pins/golden');
  await store.deleteBlob(b.sha256);
  expect(await store.listRefs()).toEqual(['images/web/latest']);
  expect(await store.has(b.sha256)).toBe(false);
  expect(store.location).toBe(path.join(tmp, 'store'));
});
