/**
 * Each artifact's bytes depend only on the image's own inputs and its own format: built alone it
 * is bit-identical to the same format built in the full set (the shared test image), from the same
 * lock and the same caches. A digest that included the format list (as it once did) fails here.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildImage, type BuildPlan } from '../../src/foundry';
import { debianMiniIso } from '../../src/foundry/debian-mini-iso';
import { builtImage, sharedCaches, TEST_PLAN, type BuiltImage } from '../support/images';

jest.setTimeout(20 * 60_000);

let img: BuiltImage;
let tmp: string;

beforeAll(async () => {
  img = await builtImage();
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-siblings-'));
});
afterAll(async () => {
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

async function artifactsOf(plan: BuildPlan, name: string): Promise<Record<string, string[]>> {
  const { manifest } = await buildImage(plan, { ...sharedCaches(), outputDir: path.join(tmp, name), lock: img.lock });
  await fs.rm(path.join(tmp, name), { recursive: true, force: true });
  const byFormat: Record<string, string[]> = {};
  for (const a of manifest.artifacts) (byFormat[a.format] ??= []).push(`${a.file} ${a.sha256}`);
  return byFormat;
}

const inFullSet = (format: string) => img.manifest.artifacts.filter((a) => a.format === format).map((a) => `${a.file} ${a.sha256}`);

test.each(TEST_PLAN.formats)('%s built alone is bit-identical to the same format built with all the others', async (format) => {
  const alone = await artifactsOf({ ...TEST_PLAN, formats: [format] }, format);
  expect(alone).toEqual({ [format]: inFullSet(format) });
});

test('installer-media built alone is bit-identical to installer-media built beside another format', async () => {
  const mini = await debianMiniIso(path.join(tmp, 'mini.iso'));
  const plan: BuildPlan = { ...TEST_PLAN, image: { ...TEST_PLAN.image, installerIso: { source: mini.path, sha256: mini.sha256 } } };
  const alone = await artifactsOf({ ...plan, formats: ['installer-media'] }, 'installer-alone');
  const beside = await artifactsOf({ ...plan, formats: ['raw', 'installer-media'] }, 'installer-beside');
  expect(alone['installer-media']).toEqual(beside['installer-media']);
  // And the raw disk beside it is the raw disk of the full set: the installer ISO changes no other artifact.
  expect(beside.raw).toEqual(inFullSet('raw'));
});
