/**
 * Run one output format's produce() again on an image that is already built (its raw disk and its
 * cached rootfs layer), into a fresh output directory: a second build of that format from the same
 * inputs, without rebuilding the image. The built image's files are only read.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { BuildPlan, FormatName } from '../../src/build';
import type { Artifact, BuildContext, Layer } from '../../src/build/context';
import { OUTPUT_FORMATS } from '../../src/build/formats';
import { logger } from '../../src/log';
import type { BuiltImage } from './images';

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
    const produced = await Promise.all(formats.map((f) => OUTPUT_FORMATS[f].produce(ctx)));
    return produced.flat();
  } finally {
    await fs.rm(workDir, { recursive: true, force: true });
  }
}
