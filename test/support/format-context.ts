/**
 * Run one output format's produce() again on an image that is already built (its raw disk and its
 * cached rootfs layer), into a fresh output directory: a second build of that format from the same
 * inputs, without rebuilding the image. The built image's files are only read.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { BuildPlan, FormatName } from '../../src/foundry';
import type { Artifact, BuildContext, Layer } from '../../src/foundry/context';
import { formatNamed } from '../../src/foundry/formats';
import { produceAll } from '../../src/foundry/pipeline';
import { logger } from '../../src/log';
import { TEST_PLAN, type BuiltImage } from './images';

/** The layer a built image was made from, as the engine reads it from the cache. */
export async function layerOf(img: BuiltImage): Promise<Layer> {
  const dir = path.join(img.cacheDir, 'layers', img.manifest.layerDigest);
  const meta = JSON.parse(await fs.readFile(path.join(dir, 'layer.json'), 'utf8')) as { digest: string; kernel: string; initrd: string };
  const rootfs = path.join(dir, 'rootfs');
  return { digest: meta.digest, dir, rootfs, kernel: path.join(rootfs, meta.kernel), initrd: path.join(rootfs, meta.initrd) };
}

/** produce() of `formats` on the built image, into `outputDir`; the artifacts in the order produced. */
export async function reproduceFormats(img: BuiltImage, plan: BuildPlan, formats: readonly FormatName[], outputDir: string): Promise<Artifact[]> {
  await fs.mkdir(outputDir, { recursive: true });
  const workDir = await fs.mkdtemp(path.join(img.cacheDir, 'work-reproduce-'));
  const ctx: BuildContext = {
    plan: { ...plan, formats: [...formats] },
    options: { cacheDir: img.cacheDir, debCacheDir: img.debCacheDir, outputDir },
    log: logger.child({ image: plan.image.name, reproduce: formats.join(',') }),
    workDir,
    lockDigest: img.manifest.lockDigest,
    layer: await layerOf(img),
    ranMmdebstrap: false,
    inputDigest: img.manifest.inputDigest,
    rawDisk: img.artifacts.raw,
    shared: new Map(),
    artifacts: [],
    timings: {},
  };
  try {
    return (await produceAll(ctx, formats.map((f) => formatNamed(f)))).flat();
  } finally {
    await fs.rm(workDir, { recursive: true, force: true });
  }
}

/**
 * Fail unless `again` (a fresh production) has the files and digests the shared test image's
 * build recorded for `formats`. The message names the other cause besides non-determinism: a
 * cached image older than a change to a format's code (its key does not cover format code).
 */
export function expectSameAsBuilt(img: BuiltImage, formats: readonly string[], again: readonly { file: string; sha256: string }[]): void {
  const line = (a: { file: string; sha256: string }) => `${a.file} ${a.sha256}`;
  const built = img.manifest.artifacts.filter((a) => formats.includes(a.format)).map(line).sort();
  const fresh = again.map(line).sort();
  if (fresh.join('\n') !== built.join('\n')) {
    throw new Error(
      `${formats.join('+')}: a second production differs from the build in ${img.dir}: not deterministic, or that cached image predates a change to the code of ${formats.join(', ')} (remove the directory to rebuild it)\nbuilt:\n  ${built.join('\n  ')}\nagain:\n  ${fresh.join('\n  ')}`,
    );
  }
}

/** Produce `formats` a second time into `outputDir` (removed afterwards) and expect the build's digests. */
export async function expectReproduced(img: BuiltImage, formats: readonly FormatName[], outputDir: string, inspect?: (again: Artifact[]) => Promise<void>): Promise<void> {
  try {
    const started = Date.now();
    const again = await reproduceFormats(img, TEST_PLAN, formats, outputDir);
    console.log(`${formats.join('+')} produced again in ${Date.now() - started} ms`);
    expectSameAsBuilt(img, formats, again);
    await inspect?.(again);
  } finally {
    await fs.rm(outputDir, { recursive: true, force: true });
  }
}
