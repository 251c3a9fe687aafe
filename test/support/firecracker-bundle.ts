/**
 * Firecracker bundles for the driver tests, as the deploy worker hands them to `prepare`
 * (ImageSource.artifact with every file of the format, verified, in manifest order):
 * - bundleOf(image): the shared test image's real bundle (test/support/images.ts);
 * - smallBundle(dir, …): a few MiB for tests whose microVMs do not boot (the stand-in without
 *   QEMU): the real config document of the format, a kernel file with an ELF header (the
 *   stand-in's InstanceStart checks it; `panic` makes its emulated guest panic), an initrd, and a
 *   real ext4 rootfs that holds the overlay init the driver looks for.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { firecrackerConfig, firecrackerFiles } from '../../src/foundry/formats/firecracker';
import { OVERLAY_INIT, OVERLAY_INIT_PATH } from '../../src/foundry/overlay-init';
import type { ImageSource } from '../../src/targets/driver';
import type { BuiltImage } from './images';

const run = promisify(execFile);
export type BundleArtifact = NonNullable<ImageSource['artifact']>;

async function described(dir: string, file: string): Promise<{ file: string; sha256: string; size: number; path: string }> {
  const p = path.join(dir, file);
  const bytes = await fs.readFile(p);
  return { file, sha256: createHash('sha256').update(bytes).digest('hex'), size: bytes.length, path: p };
}

export function bundleOf(img: BuiltImage): BundleArtifact {
  const files = img.manifest.artifacts.filter((a) => a.format === 'firecracker').map((a) => ({ file: a.file, sha256: a.sha256, size: a.size, path: path.join(img.dir, a.file) }));
  const first = files[0]!;
  return { format: 'firecracker', sha256: first.sha256, size: first.size, path: first.path, files };
}

export async function smallBundle(dir: string, name: string, options: { panic?: boolean; overlayInit?: boolean } = {}): Promise<BundleArtifact> {
  await fs.mkdir(dir, { recursive: true });
  const names = firecrackerFiles({ name });
  await fs.writeFile(path.join(dir, names.config), `${JSON.stringify(firecrackerConfig({ name }, randomBytes(32).toString('hex')), null, 2)}\n`);
  await fs.writeFile(path.join(dir, names.kernel), Buffer.concat([Buffer.from('\x7fELF', 'latin1'), Buffer.from(options.panic ? ' KUBEDOS-STANDIN-PANIC ' : ' stand-in kernel '), randomBytes(64)]));
  await fs.writeFile(path.join(dir, names.initrd), randomBytes(4096));
  const tree = path.join(dir, `${name}-tree`);
  if (options.overlayInit !== false) {
    await fs.mkdir(path.join(tree, path.dirname(OVERLAY_INIT_PATH)), { recursive: true });
    await fs.writeFile(path.join(tree, OVERLAY_INIT_PATH), OVERLAY_INIT, { mode: 0o755 });
  } else {
    await fs.mkdir(tree, { recursive: true });
  }
  await run('mkfs.ext4', ['-q', '-F', '-d', tree, path.join(dir, names.rootfs), '16M']);
  await fs.rm(tree, { recursive: true, force: true });
  const files = [];
  for (const f of [names.config, names.kernel, names.initrd, names.rootfs]) files.push(await described(dir, f));
  return { format: 'firecracker', sha256: files[0]!.sha256, size: files[0]!.size, path: files[0]!.path, files };
}
