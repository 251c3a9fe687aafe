/**
 * `kubedos build`, `kubedos lock` and `kubedos verify`: manufacturing through Temporal, and
 * checking a stored artifact's digest and signature (`verify --artifact`).
 */
import type { Command } from 'commander';
import { createReadStream, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { BuildImageResult } from '../../../activities/build';
import { ConfigError, SpecError } from '../../errors';
import { formatSpecError, loadSpec } from '../../platform';
import { configuredStore, withStore } from '../../store/default';
import { parseDigest } from '../../store/pins';
import type { ArtifactStore } from '../../store/store';
import { withTrustedSigners } from '../../store/trust';
import { verifyArtifact } from '../../store/verify';
import { connectClient } from '../../temporal/client';
import { action, type GlobalOptions } from '../command';
import { EXIT } from '../exit-codes';
import { followBuilds, stageRequests, startManufacture, updateLockFile, type ManufactureOptions } from '../manufacture';
import { colors as pc, note, printJson, renderTable } from '../output';

const list = (v: string) => v.split(',').map((s) => s.trim()).filter(Boolean);
const specErrorDetail = (err: unknown) => (err instanceof SpecError ? formatSpecError(err) : undefined);

/** Spec → stored plans (in the configured store) → one manufacture workflow per image → results; lock file updated. */
async function manufactureFromSpec(specFile: string, store: ArtifactStore, options: ManufactureOptions & GlobalOptions): Promise<BuildImageResult[]> {
  const spec = await loadSpec(specFile);
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

/**
 * Put each artifact into dir under its file name, atomically: linked (or copied) from the local
 * store, or downloaded and verified from a remote one.
 */
async function exportArtifacts(results: BuildImageResult[], dir: string, store: ArtifactStore): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  for (const a of results.flatMap((r) => r.artifacts)) {
    const dest = path.join(dir, a.file);
    const local = store.localPath(a.sha256);
    if (!local) {
      await store.getFile(a.sha256, dest);
      continue;
    }
    const tmp = `${dest}.${process.pid}.tmp`;
    await fs.rm(tmp, { force: true });
    await fs.link(local, tmp).catch(() => fs.copyFile(local, tmp));
    await fs.rename(tmp, dest);
  }
}

/** A local file holding a stored blob: the local store's own, or a verified download into dir. */
async function localCopy(store: ArtifactStore, sha256: string, dir: string): Promise<string> {
  const local = store.localPath(sha256);
  if (local) return local;
  const dest = path.join(dir, sha256);
  await store.getFile(sha256, dest);
  return dest;
}

/** `verify --artifact`: the blob hashes to its digest and a manifest with a valid signature references it. */
async function verifyStoredArtifact(opts: GlobalOptions & VerifyArtifactCliOptions): Promise<void> {
  const sha256 = parseDigest(opts.artifact!, '--artifact');
  const manifest = opts.manifest === undefined ? undefined : parseDigest(opts.manifest, '--manifest');
  await withStore(configuredStore(), (store) =>
    withTrustedSigners({ allowedSigners: opts.allowedSigners }, async (trust) => {
      const ok = await verifyArtifact(store, sha256, { allowedSigners: trust.file, manifest, ref: opts.ref });
      const at = ok.artifact;
      const summary = {
        verified: true,
        store: store.location,
        artifact: ok.sha256,
        size: ok.size,
        manifest: ok.manifest,
        refs: ok.refs,
        image: ok.publication.image.name,
        ...(at ? { format: at.format, file: at.file } : {}),
        trust: trust.source,
      };
      if (opts.json) printJson(summary);
      else {
        const refs = ok.refs.length ? ` (${ok.refs.join(', ')})` : ' (no ref names it)';
        process.stdout.write(
          [
            `${pc.green('verified')}: sha256:${ok.sha256}`,
            `  bytes      hash to the digest (${ok.size} bytes in ${store.location})`,
            `  manifest   sha256:${ok.manifest}${refs}: image ${ok.publication.image.name}${at ? `, ${at.format} artifact ${at.file}` : ''}`,
            `  signature  valid, by a key trusted in ${trust.source}`,
          ].join('\n') + '\n',
        );
      }
    }),
  );
}

interface VerifyArtifactCliOptions {
  artifact?: string;
  manifest?: string;
  ref?: string;
  allowedSigners?: string;
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
        const results = await withStore(configuredStore(), async (store) => {
          const built = await manufactureFromSpec(specFile, store, { images: opts.image, formats: opts.format, json: opts.json });
          if (opts.out) await exportArtifacts(built, opts.out, store);
          return built;
        });
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
        const results = await withStore(configuredStore(), (store) =>
          manufactureFromSpec(specFile, store, { images: opts.image, ignoreLock: opts.update, formats: ['raw'], json: opts.json }),
        );
        const rows = results.map((r) => ({ image: r.image, lockDigest: r.lockDigest }));
        if (opts.json) printJson({ images: rows });
        else process.stdout.write(`${renderTable(['IMAGE', 'LOCK DIGEST'], rows.map((r) => [r.image, r.lockDigest]))}\n`);
        return EXIT.ok;
      }, specErrorDetail),
    );

  program
    .command('verify')
    .description(
      'SPEC --image NAME: rebuild an image from empty caches and compare every artifact with the recorded build; ' +
        '--artifact DIGEST: check that a stored artifact hashes to its digest and a published manifest with a valid Foundry signature references it',
    )
    .argument('[spec]', 'kubedos.yaml, or the directory holding it (rebuild-and-compare)')
    .option('--image <name>', 'the image to rebuild and compare')
    .option('--format <formats>', 'formats to compare (default: the image\'s outputs)', list)
    .option('--artifact <digest>', 'check this stored artifact (sha256) instead of rebuilding')
    .option('--ref <ref>', 'with --artifact: only the manifest this ref names (e.g. images/web/latest)')
    .option('--manifest <digest>', 'with --artifact: only this publication manifest')
    .option('--allowed-signers <file>', 'OpenSSH allowed_signers file of trusted Foundry keys (default: KUBEDOS_HOME/keys/allowed_signers, else this machine\'s Foundry key)')
    .option('--json', 'print the result as JSON')
    .action(
      action(async (specFile: string | undefined, opts: GlobalOptions & VerifyArtifactCliOptions & { image?: string; format?: string[] }) => {
        if (opts.artifact !== undefined) {
          if (specFile !== undefined || opts.image !== undefined || opts.format !== undefined) {
            throw new ConfigError('--artifact checks a stored artifact; it takes no SPEC, --image or --format', 'run either `kubedos verify --artifact DIGEST` or `kubedos verify SPEC --image NAME`');
          }
          await verifyStoredArtifact(opts);
          return EXIT.ok;
        }
        if (specFile === undefined || opts.image === undefined) {
          throw new ConfigError(
            `verify needs ${specFile === undefined ? 'SPEC' : ''}${specFile === undefined && opts.image === undefined ? ' and ' : ''}${opts.image === undefined ? '--image NAME' : ''}`,
            'run `kubedos verify SPEC --image NAME` (rebuild and compare) or `kubedos verify --artifact DIGEST` (check a stored artifact)',
          );
        }
        if (opts.ref !== undefined || opts.manifest !== undefined || opts.allowedSigners !== undefined) {
          throw new ConfigError('--ref, --manifest and --allowed-signers go with --artifact', 'add --artifact DIGEST, or drop them');
        }
        const image = opts.image;
        const base = { images: [image], formats: opts.format, json: opts.json };
        const rows = await withStore(configuredStore(), async (store) => {
          const [recorded] = await manufactureFromSpec(specFile, store, base);
          const [rebuilt] = await manufactureFromSpec(specFile, store, { ...base, scratch: true });
          const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-verify-'));
          try {
            const out = [];
            for (const a of recorded!.artifacts) {
              const b = rebuilt!.artifacts.find((x) => x.format === a.format && x.file === a.file);
              const identical = b?.sha256 === a.sha256;
              const offset = b && !identical ? await firstDifference(await localCopy(store, a.sha256, tmp), await localCopy(store, b.sha256, tmp)) : undefined;
              out.push({ format: a.format, file: a.file, recorded: a.sha256, rebuilt: b?.sha256, identical, firstDifferenceAt: offset });
            }
            return out;
          } finally {
            await fs.rm(tmp, { recursive: true, force: true });
          }
        });
        const same = rows.every((r) => r.identical);
        if (opts.json) printJson({ image, reproducible: same, artifacts: rows });
        else {
          process.stdout.write(
            `${renderTable(['FORMAT', 'RECORDED', 'REBUILT', 'RESULT'], rows.map((r) => [
              r.format, r.recorded.slice(0, 16), (r.rebuilt ?? '-').slice(0, 16),
              r.identical ? pc.green('identical') : pc.red(r.rebuilt ? `differs at byte ${r.firstDifferenceAt}` : 'missing'),
            ]))}\n`,
          );
          const first = rows.find((r) => !r.identical);
          note(same ? pc.green(`${image}: every artifact is bit-identical`) : pc.red(`${image}: ${first!.file} differs first${first!.firstDifferenceAt !== undefined ? `, at byte offset ${first!.firstDifferenceAt}` : ''}`));
        }
        return same ? EXIT.ok : EXIT.notReproducible;
      }, specErrorDetail),
    );
}
