/**
 * The base disk's root filesystem is made in place at its partition offset (mkfs.ext4 -E offset):
 * byte for byte the filesystem made in a file of its own and copied there, which is what every
 * earlier image holds. Without `nodiscard` mke2fs marks the inode tables zeroed and they differ.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { makeBaseExt4 } from '../../src/foundry/ext4';
import { copySparse, createSparseFile, sha256SparseFile } from '../../src/foundry/files';
import type { BuildContext, Layer } from '../../src/foundry/context';

const MiB = 1024 * 1024;
let tmp: string;

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-ext4-in-place-'));
});
afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

test('in place at an offset gives the disk a separate file copied there gives', async () => {
  const rootfs = path.join(tmp, 'rootfs');
  await fs.mkdir(path.join(rootfs, 'etc', 'kubedos'), { recursive: true });
  await fs.mkdir(path.join(rootfs, 'usr', 'lib'), { recursive: true });
  await fs.writeFile(path.join(rootfs, 'etc', 'hostname'), 'node\n');
  await fs.writeFile(path.join(rootfs, 'etc', 'kubedos', 'a "quoted" name'), 'x');
  await fs.writeFile(path.join(rootfs, 'usr', 'lib', 'big'), Buffer.alloc(3 * MiB, 7));
  await fs.symlink('usr/lib', path.join(rootfs, 'lib'));
  const layer: Layer = { digest: 'd'.repeat(64), dir: tmp, rootfs, kernel: '', initrd: '' };
  const ctx = { plan: { sourceDateEpoch: 1735689600 }, options: {}, workDir: tmp } as unknown as BuildContext;
  const size = 96 * MiB;
  const offset = 5 * MiB;
  const fsKiB = (64 * MiB) / 1024;
  const ids = ['0d8c3b1e-8a5e-4b7b-9d7e-2f3a4b5c6d7e', '1e9d4c2f-9b6f-4c8c-8e8f-3a4b5c6d7e8f'] as const;

  const separate = path.join(tmp, 'root.ext4');
  await makeBaseExt4(ctx, layer, separate, fsKiB, ...ids);
  const copied = path.join(tmp, 'copied.raw');
  await createSparseFile(copied, size);
  await copySparse(separate, copied, offset);

  const inPlace = path.join(tmp, 'in-place.raw');
  await createSparseFile(inPlace, size);
  await makeBaseExt4(ctx, layer, inPlace, fsKiB, ...ids, offset);

  expect((await fs.stat(inPlace)).size).toBe(size);
  expect(await sha256SparseFile(inPlace)).toBe(await sha256SparseFile(copied));
});
