/** `kubedos validate SPEC` and `kubedos schema`. */
import type { Command } from 'commander';
import { writeFileSync } from 'node:fs';
import { SpecError } from '../../errors';
import { formatSpecError, loadSpec, specDigest, specJsonSchema } from '../../platform';
import { action, type GlobalOptions } from '../command';
import { EXIT } from '../exit-codes';
import { colors as pc, printJson } from '../output';

export function registerValidate(program: Command): void {
  program
    .command('validate')
    .description('check a platform spec: every problem is listed with its path and a hint')
    .argument('<spec>', 'path of kubedos.yaml')
    .option('--json', 'print the result (or the problems) as JSON on stdout')
    .action(
      action(async (file: string, opts: GlobalOptions) => {
        const spec = await loadSpec(file);
        const summary = {
          valid: true,
          file,
          digest: specDigest(spec),
          images: Object.keys(spec.images),
          targets: Object.keys(spec.targets),
          fleets: Object.keys(spec.fleets),
          schedules: Object.keys(spec.schedules),
        };
        if (opts.json) printJson(summary);
        else {
          process.stdout.write(
            `${pc.green('valid')}: ${file} (${summary.images.length} images, ${summary.targets.length} targets, ` +
              `${summary.fleets.length} fleets, ${summary.schedules.length} schedules)\n`,
          );
        }
        return EXIT.ok;
      }, (err) => (err instanceof SpecError ? formatSpecError(err) : undefined)),
    );

  program
    .command('schema')
    .description('print the JSON Schema of kubedos.yaml (for editor completion and validation)')
    .option('-o, --out <file>', 'write it to a file instead of stdout')
    .action(
      action(async (opts: { out?: string }) => {
        const text = `${JSON.stringify(specJsonSchema(), null, 2)}\n`;
        if (opts.out) writeFileSync(opts.out, text);
        else process.stdout.write(text);
      }),
    );
}
