/**
 * `kubedos cluster init`: make a Temporal cluster KubeDos did not start ready for it, on purpose —
 * create the namespace (TEMPORAL_NAMESPACE) when missing and register KubeDos's search
 * attributes. Every other command does the attribute half on connect (see cluster-bootstrap.ts);
 * `--check` only looks.
 */
import type { Command } from 'commander';
import { ConfigError } from '../../errors';
import { connectClient } from '../../temporal/client';
import { bootstrapCluster, bootstrapCommands, forgetVerdict, inspectCluster, isReady, recordReady, type ClusterState } from '../../temporal/cluster-bootstrap';
import { action, type GlobalOptions } from '../command';
import { EXIT } from '../exit-codes';
import { colors as pc, note, printJson, renderTable } from '../output';

function parseRetention(text: string): number {
  const m = /^(\d+)d$/.exec(text);
  if (!m || Number(m[1]) < 1 || Number(m[1]) > 3650) throw new ConfigError(`--retention: expected a number of days such as 30d, got "${text}"`, 'closed runs are kept that long; 1d to 3650d');
  return Number(m[1]);
}

export function renderCluster(s: ClusterState, embedded: boolean): string {
  const ns = s.namespaceCreated ? pc.green('created') : s.namespaceExists ? 'exists' : pc.red('missing');
  const head = `temporal    ${s.address}${embedded ? ' (embedded dev server)' : s.cloud ? ' (Temporal Cloud)' : ''}\nnamespace   ${s.namespace}: ${ns}`;
  const rows = s.attributes.map((a) => [
    a.name,
    a.type,
    a.created ? pc.green('registered now') : a.registered === a.type ? 'present' : a.registered ? pc.red(`wrong type (${a.registered})`) : pc.red('missing'),
  ]);
  return `${head}\n\n${renderTable(['SEARCH ATTRIBUTE', 'TYPE', 'STATE'], rows)}`;
}

export function registerCluster(program: Command): void {
  const cluster = program.command('cluster').description('prepare the Temporal cluster KubeDos talks to (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE)');
  cluster
    .command('init')
    .description('create the namespace when missing and register the KubeDos search attributes (idempotent); --check only looks')
    .option('--check', 'change nothing: report, and exit 4 with the commands to run when something is missing')
    .option('--retention <days>', 'retention of closed runs when the namespace is created here', '30d')
    .option('--json', 'print the state as JSON')
    .action(
      action(async (opts: GlobalOptions & { check?: boolean; retention: string }) => {
        const retentionDays = parseRetention(opts.retention);
        const { client, settings, close } = await connectClient({ bootstrap: false });
        try {
          forgetVerdict(settings);
          const state = opts.check
            ? await inspectCluster(client.connection, settings)
            : await bootstrapCluster(client.connection, settings, { createNamespace: true, retentionDays });
          const ready = isReady(state);
          if (ready) recordReady(state);
          if (opts.json) printJson({ ...state, embedded: settings.embedded, ready, commands: ready ? [] : bootstrapCommands(state, { retentionDays }) });
          else {
            process.stdout.write(`${renderCluster(state, settings.embedded)}\n`);
            if (!ready) note(`\nnot ready; run:\n${bootstrapCommands(state, { retentionDays }).map((c) => `  ${c}`).join('\n')}\n(or \`kubedos cluster init\` without --check)`);
          }
          return ready ? EXIT.ok : EXIT.unavailable;
        } finally {
          await close();
        }
      }),
    );
}
