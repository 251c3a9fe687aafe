/**
 * Reproducibility: the same plan built twice from EMPTY caches (two independent mmdebstrap runs,
 * two .deb caches) gives bit-identical artifacts in every format. Slow (~two cold builds).
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildImage, serializeLock } from '../../src/build';
import { sha256File } from '../../src/build/lock';
import { TEST_PLAN } from '../support/images';

jest.setTimeout(40 * 60 * 1000);

test('two builds from empty caches are bit-identical, artifact by artifact', async () => {
  const root = await fs.mkdtemp(path.join(process.env.KUBEDOS_TEST_IMAGES ?? os.tmpdir(), 'kubedos-repro-'));
  try {
    const runs = [];
    for (const n of [1, 2]) {
      const dir = path.join(root, `run${n}`);
      const result = await buildImage(TEST_PLAN, { cacheDir: path.join(dir, 'cache'), debCacheDir: path.join(dir, 'debs'), outputDir: path.join(dir, 'out') });
      console.log(`cold build ${n}: ${result.totalMs} ms`, result.timings);
      expect(result.ranMmdebstrap).toBe(true);
      runs.push({ dir, result });
    }
    const [a, b] = runs as [(typeof runs)[number], (typeof runs)[number]];
    expect(serializeLock(a.result.lock)).toBe(serializeLock(b.result.lock));
    expect(b.result.manifest).toEqual(a.result.manifest);
    for (const art of a.result.manifest.artifacts) {
      const other = path.join(b.dir, 'out', art.file);
      expect({ file: art.file, sha256: await sha256File(other) }).toEqual({ file: art.file, sha256: art.sha256 });
    }
    const manifests = await Promise.all(runs.map((r) => sha256File(path.join(r.dir, 'out', `${TEST_PLAN.image.name}.manifest.json`))));
    expect(manifests[0]).toBe(manifests[1]);
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
});
