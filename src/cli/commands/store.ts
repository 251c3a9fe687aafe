/**
 * `kubedos store …`: the artifact store the configured environment selects (S3 when
 * KUBEDOS_S3_BUCKET is set, else the local store under KUBEDOS_HOME; `--local` forces the latter).
 */
import type { Command } from 'commander';
import { ConfigError } from '../../errors';
import { parseDuration } from '../../platform/quantities';
import { configuredStore, defaultStore, withStore } from '../../store/default';
import { gc } from '../../store/gc';
import { describeRefs } from '../../store/inventory';
import { listPins, pin, unpin } from '../../store/pins';
import { FoundrySigner } from '../../store/signing';
import type { ArtifactStore } from '../../store/store';
import { action, type GlobalOptions } from '../command';
import { EXIT } from '../exit-codes';
import { colors as pc, note, printJson, renderTable } from '../output';

/** Ref prefixes gc treats as caches, not roots: build records and verify rebuilds. */
export const GC_CACHE_PREFIXES = ['builds/', 'scratch/'] as const;

interface StoreOptions extends GlobalOptions {
  local?: boolean;
}

const short = (sha256: string) => sha256.slice(0, 16);
const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

/** The store a command acts on: the configured one, or the local one with --local. */
const storeOf = (opts: StoreOptions): ArtifactStore => (opts.local ? defaultStore() : configuredStore());

function graceMs(text: string): number {
  const ms = parseDuration(text);
  if (ms === undefined) throw new ConfigError(`--grace "${text}" is not a duration`, 'write it like 1h, 30m, 90s or 0s');
  return ms;
}

export function registerStore(program: Command): void {
  const store = program
    .command('store')
    .description('the artifact store: list, pin, garbage-collect (S3 when KUBEDOS_S3_BUCKET is set, else local)');
  const local = ['--local', 'act on the local store under KUBEDOS_HOME even when KUBEDOS_S3_BUCKET is set (a build host\'s staging)'] as const;

  store
    .command('ls')
    .description('list refs: publications (image, formats, signed), build records, pins')
    .option('--prefix <prefix>', 'only refs starting with this (e.g. images/, pins/)')
    .option('--all', 'include signatures/… refs')
    .option(...local)
    .option('--json', 'print the refs as JSON')
    .action(
      action(async (opts: StoreOptions & { prefix?: string; all?: boolean }) =>
        withStore(storeOf(opts), async (s) => {
          const entries = await describeRefs(s, { prefix: opts.prefix, signatures: opts.all });
          if (opts.json) printJson({ store: s.location, refs: entries });
          else {
            note(`store: ${s.location}`);
            process.stdout.write(
              `${renderTable(
                ['REF', 'DIGEST', 'KIND', 'WHAT'],
                entries.map((e) => [
                  e.ref,
                  short(e.sha256),
                  e.kind,
                  e.kind === 'publication'
                    ? `${e.image}: ${e.artifacts!.map((a) => a.format).join(', ')}${e.signed ? '' : pc.red(' (unsigned)')}`
                    : e.kind === 'build-record'
                      ? `${e.image}: ${e.artifacts!.map((a) => a.format).join(', ')}`
                      : e.size !== undefined
                        ? mib(e.size)
                        : pc.red('blob missing'),
                ]),
              )}\n`,
            );
          }
          return EXIT.ok;
        }),
      ),
    );

  store
    .command('gc')
    .description('remove blobs no kept manifest references; roots are images/… refs, pins and other refs (build records and scratch/ rebuilds are caches)')
    .option('--dry-run', 'list what would be removed; remove nothing')
    .option('--grace <duration>', 'keep blobs younger than this (a publish in progress uploads blobs before its ref)', '1h')
    .option(...local)
    .option('--json', 'print the result as JSON')
    .action(
      action(async (opts: StoreOptions & { dryRun?: boolean; grace: string }) =>
        withStore(storeOf(opts), async (s) => {
          const result = await gc(s, { dryRun: Boolean(opts.dryRun), minAgeMs: graceMs(opts.grace), caches: GC_CACHE_PREFIXES });
          if (opts.json) {
            printJson({ store: s.location, ...result, removedBlobs: result.removedBlobs.map((b) => ({ sha256: b.sha256, size: b.size })) });
          } else {
            const verb = result.dryRun ? 'would remove' : 'removed';
            if (result.removedBlobs.length) {
              process.stdout.write(`${renderTable(['BLOB', 'SIZE'], result.removedBlobs.map((b) => [b.sha256, mib(b.size)]))}\n`);
            }
            for (const r of result.removedRefs) process.stdout.write(`${verb} ref ${r}\n`);
            note(
              `${s.location}: ${verb} ${result.removedBlobs.length} blob(s), ${mib(result.bytesFreed)}, ${result.removedRefs.length} ref(s)` +
                `${result.abortedUploads ? `, ${result.abortedUploads} abandoned upload(s)` : ''}; kept ${result.keptBlobs} blob(s)`,
            );
          }
          return EXIT.ok;
        }),
      ),
    );

  store
    .command('pin')
    .description('keep a digest (usually a publication manifest) through gc, naming why')
    .argument('<digest>', 'sha256 digest (sha256:… or 64 hex)')
    .requiredOption('--reason <reason>', 'why, as lowercase words separated by / (e.g. fleet/web)')
    .option('--json', 'print the pin as JSON')
    .action(
      action(async (digest: string, opts: GlobalOptions & { reason: string }) =>
        withStore(configuredStore(), async (s) => {
          const p = await pin(s, digest, opts.reason);
          if (opts.json) printJson({ store: s.location, pin: p });
          else process.stdout.write(`pinned sha256:${p.sha256} as ${p.ref}\n`);
          return EXIT.ok;
        }),
      ),
    );

  store
    .command('unpin')
    .description('remove the pins of a digest (only the one with --reason when given)')
    .argument('<digest>', 'sha256 digest (sha256:… or 64 hex)')
    .option('--reason <reason>', 'only the pin with this reason')
    .option('--json', 'print the removed pins as JSON')
    .action(
      action(async (digest: string, opts: GlobalOptions & { reason?: string }) =>
        withStore(configuredStore(), async (s) => {
          const gone = await unpin(s, digest, opts.reason);
          if (opts.json) printJson({ store: s.location, removed: gone });
          else if (gone.length === 0) note(`no pin of sha256:${digest.replace(/^sha256:/, '')}${opts.reason ? ` with reason ${opts.reason}` : ''} in ${s.location}`);
          else for (const p of gone) process.stdout.write(`unpinned ${p.ref}\n`);
          return EXIT.ok;
        }),
      ),
    );

  store
    .command('pins')
    .description('list pins: digest and reason')
    .option('--json', 'print the pins as JSON')
    .action(
      action(async (opts: GlobalOptions) =>
        withStore(configuredStore(), async (s) => {
          const pins = await listPins(s);
          if (opts.json) printJson({ store: s.location, pins });
          else process.stdout.write(`${renderTable(['DIGEST', 'REASON', 'REF'], pins.map((p) => [p.sha256, p.reason, p.ref]))}\n`);
          return EXIT.ok;
        }),
      ),
    );

  store
    .command('key')
    .description('print the allowed_signers line of this Foundry\'s signing key (install it as KUBEDOS_HOME/keys/allowed_signers on deploy hosts)')
    .action(
      action(async () => {
        process.stdout.write(`${await new FoundrySigner().allowedSignersLine()}\n`);
        return EXIT.ok;
      }),
    );
}
