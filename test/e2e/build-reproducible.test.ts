/**
 * Reproducibility: a build from EMPTY caches (empty layer cache, empty .deb cache: resolution,
 * downloads and mmdebstrap all run) is bit-identical, artifact by artifact, to the shared test
 * image (test/support/images.ts, itself built cold on a fresh runner). One cold build here.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildImage, serializeLock, type BuildResult } from '../../src/foundry';
import { sha256File } from '../../src/foundry/lock';
import { builtImage, TEST_PLAN, type BuiltImage } from '../support/images';

jest.setTimeout(40 * 60 * 1000);

/** sha256 of every artifact file in `dir`, plus the manifest file itself. */
async function digests(dir: string, result: Pick<BuildResult, 'manifest'>): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const a of result.manifest.artifacts) out[a.file] = await sha256File(path.join(dir, a.file));
  const manifestFile = `${TEST_PLAN.image.name}.manifest.json`;
  out[manifestFile] = await sha256File(path.join(dir, manifestFile));
  return out;
}

let img: BuiltImage;
beforeAll(async () => {
  img = await builtImage();
});

test('a build from empty caches is bit-identical to the shared image, artifact by artifact', async () => {
  const root = await fs.mkdtemp(path.join(process.env.KUBEDOS_TEST_IMAGES ?? os.tmpdir(), 'kubedos-repro-'));
  try {
    const cold = { cacheDir: path.join(root, 'cache'), debCacheDir: path.join(root, 'debs'), outputDir: path.join(root, 'out') };
    const result = await buildImage(TEST_PLAN, cold);
    console.log(`cold build (empty layer and .deb caches): ${result.totalMs} ms`, result.timings);
    expect(result.ranMmdebstrap).toBe(true);
    let reference: { dir: string; manifest: BuildResult['manifest'] } = img;
    if (serializeLock(result.lock) !== serializeLock(img.lock)) {
      // The shared image is older than the mirror's current state (a kept KUBEDOS_TEST_IMAGES):
      // compare with a rebuild from the fresh lock instead (empty layer cache, same .deb cache).
      console.warn('the mirror moved since the shared image was built: comparing with a rebuild from the fresh lock');
      const again = { ...cold, cacheDir: path.join(root, 'cache2'), outputDir: path.join(root, 'out2') };
      const second = await buildImage(TEST_PLAN, { ...again, lock: result.lock });
      expect(second.ranMmdebstrap).toBe(true);
      reference = { dir: again.outputDir, manifest: second.manifest };
    }
    expect(result.manifest).toEqual(reference.manifest);
    expect(await digests(cold.outputDir, result)).toEqual(await digests(reference.dir, reference));
  } finally {
    if (!process.env.KUBEDOS_KEEP_WORK) await fs.rm(root, { recursive: true, force: true });
  }
});
