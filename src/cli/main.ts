/** The kubedos command line: parse, call the domain or the Temporal client, render. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Command, CommanderError } from 'commander';
import { projectRoot } from '../config/paths';
import { ENV_VARS } from '../config/env';
import { registerBuild } from './commands/build';
import { registerCluster } from './commands/cluster';
import { registerDoctor } from './commands/doctor';
import { registerFleet } from './commands/fleet';
import { registerRuns } from './commands/runs';
import { registerSchedule } from './commands/schedule';
import { registerStack } from './commands/stack';
import { registerStore } from './commands/store';
import { registerValidate } from './commands/validate';
import { EXIT } from './exit-codes';

export function buildProgram(): Command {
  const { version } = JSON.parse(readFileSync(path.join(projectRoot(), 'package.json'), 'utf8')) as { version: string };
  const program = new Command('kubedos')
    .description('Manufacture sealed, bit-identical OS artifacts and deploy them as cattle.')
    .version(version)
    .option('--debug', 'print stack traces with errors')
    .showHelpAfterError()
    .exitOverride();
  registerValidate(program);
  registerBuild(program);
  registerDoctor(program);
  registerStack(program);
  registerCluster(program);
  registerFleet(program);
  registerSchedule(program);
  registerRuns(program);
  registerStore(program);
  program.addHelpText(
    'after',
    [
      '',
      'Exit codes: 0 ok, 1 failure, 2 usage, 3 invalid spec, 4 Temporal unavailable, 5 capability missing, 6 not reproducible, 130 interrupted.',
      '',
      'Environment:',
      ...ENV_VARS.map((v) => `  ${v.name.padEnd(34)} ${v.description} (default: ${v.default})`),
    ].join('\n'),
  );
  return program;
}

export async function main(argv: string[] = process.argv): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version arrive here too, with exit code 0.
      process.exitCode = err.exitCode === 0 ? EXIT.ok : EXIT.usage;
      return;
    }
    throw err;
  }
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`${err?.stack ?? err}\n`);
    process.exitCode = EXIT.failure;
  });
}
