/** `kubedos build`, `kubedos lock` and `kubedos verify`: manufacturing through Temporal. */
import type { Command } from 'commander';
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import type { BuildImageResult } from '../../../activities/build';
import { SpecError } from '../../errors';
import { formatSpecError, loadSpec } from '../../spec';
import { defaultStore } from '../../store/default';
import { connectClient } from '../../temporal/client';
import { action, type GlobalOptions } from '../command';
import { EXIT } from '../exit-codes';
import { followBuilds, stageRequests, startManufacture, updateLockFile, type ManufactureOptions } from '../manufacture';
import { colors as pc, note, printJson, renderTable } from '../output';

const list = (v: string) => v.split(',').map((s) => s.trim()).filter(Boolean);
const specErrorDetail = (err: unknown) => (err instanceof SpecError ? formatSpecError(err) : undefined);

/** Spec → stored plans → one manufacture workflow per image → results; lock file updated. */
async function manufactureFromSpec(specFile: string, options: ManufactureOptions & GlobalOptions): Promise<BuildImageResult[]> {
  const spec = await loadSpec(specFile);
  const store = defaultStore();
  const requests = await stageRequests(specFile, spec, store, options);
  const { client, settings, close } = await connectClient();
  try {
    const handles = await startManufacture(client, settings, requests);
    const results = await followBuilds(client, handles, requests, { progress: !options.json });
    if (!options.scratch) {
      const written = await updateLockFile(specFile, spec, store, results);
      if (written) note(`wrote ${written}`);
    }
    return results;
  } finally {
    await close();
  }
}

function renderResults(results: BuildImageResult[]): string {
  return renderTable(
    ['IMAGE', 'FORMAT', 'SIZE', 'SHA256', 'LOCATION'],
    results.flatMap((r) => r.artifacts.map((a) => [r.image, a.format, `${(a.size / 2 ** 20).toFixed(1)} MiB`, a.sha256.slice(0, 16), a.location])),
  );
}

/** Link (or copy) each artifact into dir under its file name, atomically. */
async function exportArtifacts(results: BuildImageResult[], dir: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  for (const a of results.flatMap((r) => r.artifacts)) {
    const dest = path.join(dir, a.file);
    const tmp = `${dest}.${process.pid}.tmp`;
    await fs.rm(tmp, { force: true });
    await fs.link(a.location, tmp).catch(() => fs.copyFile(a.location, tmp));
    await fs.rename(tmp, dest);
  }
}

/** First byte offset at which two files differ (or the shorter length), undefined if equal. */
export async function firstDifference(a: string, b: string): Promise<number | undefined> {
  const ra = createReadStream(a, { highWaterMark: 1 << 20 })[Symbol.asyncIterator]();
  const rb = createReadStream(b, { highWaterMark: 1 << 20 })[Symbol.asyncIterator]();
  let offset = 0;
  let bufA: Buffer = Buffer.alloc(0);
  let bufB: Buffer = Buffer.alloc(0);
  for (;;) {
    if (!bufA.length) bufA = ((await ra.next()).value as Buffer | undefined) ?? Buffer.alloc(0);
    if (!bufB.length) bufB = ((await rb.next()).value as Buffer | undefined) ?? Buffer.alloc(0);
    if (!bufA.length && !bufB.length) return undefined;
    if (!bufA.length || !bufB.length) return offset;
    const n = Math.min(bufA.length, bufB.length);
    for (let i = 0; i < n; i++) if (bufA[i] !== bufB[i]) return offset + i;
    offset += n;
    bufA = bufA.subarray(n);
    bufB = bufB.subarray(n);
  }
}

export function registerBuild(program: Command): void {
  program
    .command('build')
    .description('manufacture images from a spec through the build pool; writes kubedos.lock on first build')
    .argument('<spec>', 'kubedos.yaml, or the directory holding it')
    .option('--image <names>', 'images to build (comma-separated; default: all)', list)
    .option('--format <formats>', 'formats to build (comma-separated; default: each image\'s outputs)', list)
    .option('--out <dir>', 'also link the artifacts into this directory under their file names')
    .option('--json', 'print the manifests as JSON on stdout')
    .action(
      action(async (specFile: string, opts: GlobalOptions & { image?: string[]; format?: string[]; out?: string }) => {
        const results = await manufactureFromSpec(specFile, { images: opts.image, formats: opts.format, json: opts.json });
        if (opts.out) await exportArtifacts(results, opts.out);
        if (opts.json) printJson({ images: results });
        else process.stdout.write(`${renderResults(results)}\n`);
        return EXIT.ok;
      }, specErrorDetail),
    );

  program
    .command('lock')
    .description('resolve each image\'s package set and write kubedos.lock (--update re-resolves on purpose)')
    .argument('<spec>', 'kubedos.yaml, or the directory holding it')
    .option('--image <names>', 'images to lock (comma-separated; default: all)', list)
    .option('--update', 'ignore the current lock and re-resolve against the mirror')
    .option('--json', 'print the lock digests as JSON')
    .action(
      action(async (specFile: string, opts: GlobalOptions & { image?: string[]; update?: boolean }) => {
        const results = await manufactureFromSpec(specFile, { images: opts.image, ignoreLock: opts.update, formats: ['raw'], json: opts.json });
        const rows = results.map((r) => ({ image: r.image, lockDigest: r.lockDigest }));
        if (opts.json) printJson({ images: rows });
        else process.stdout.write(`${renderTable(['IMAGE', 'LOCK DIGEST'], rows.map((r) => [r.image, r.lockDigest]))}\n`);
        return EXIT.ok;
      }, specErrorDetail),
    );

  program
    .command('verify')
    .description('rebuild an image from empty caches and compare every artifact with the recorded build')
    .argument('<spec>', 'kubedos.yaml, or the directory holding it')
    .requiredOption('--image <name>', 'the image to verify')
    .option('--format <formats>', 'formats to compare (default: the image\'s outputs)', list)
    .option('--json', 'print the comparison as JSON')
    .action(
      action(async (specFile: string, opts: GlobalOptions & { image: string; format?: string[] }) => {
        const base = { images: [opts.image], formats: opts.format, json: opts.json };
        const [recorded] = await manufactureFromSpec(specFile, base);
        const [rebuilt] = await manufactureFromSpec(specFile, { ...base, scratch: true });
        const rows = [];
        for (const a of recorded!.artifacts) {
          const b = rebuilt!.artifacts.find((x) => x.format === a.format && x.file === a.file);
          const identical = b?.sha256 === a.sha256;
          const offset = b && !identical ? await firstDifference(a.location, b.location) : undefined;
          rows.push({ format: a.format, file: a.file, recorded: a.sha256, rebuilt: b?.sha256, identical, firstDifferenceAt: offset });
        }
        const same = rows.every((r) => r.identical);
        if (opts.json) printJson({ image: opts.image, reproducible: same, artifacts: rows });
        else {
          process.stdout.write(
            `${renderTable(['FORMAT', 'RECORDED', 'REBUILT', 'RESULT'], rows.map((r) => [
              r.format, r.recorded.slice(0, 16), (r.rebuilt ?? '-').slice(0, 16),
              r.identical ? pc.green('identical') : pc.red(r.rebuilt ? `differs at byte ${r.firstDifferenceAt}` : 'missing'),
            ]))}\n`,
          );
          const first = rows.find((r) => !r.identical);
          note(same ? pc.green(`${opts.image}: every artifact is bit-identical`) : pc.red(`${opts.image}: ${first!.file} differs first${first!.firstDifferenceAt !== undefined ? `, at byte offset ${first!.firstDifferenceAt}` : ''}`));
        }
        return same ? EXIT.ok : EXIT.notReproducible;
      }, specErrorDetail),
    );
}
