/** `kubedos dev` (the embedded stack in the foreground) and `kubedos stack start|stop|status`. */
import type { Command } from 'commander';
import { describeExit } from '../../exec/supervisor';
import { parsePoolList } from '../../pools/pools';
import { connectClient } from '../../temporal/client';
import { runStackInForeground, startStack, stackStatus, stopStack, type ProcessStatus, type StackStatus } from '../../temporal/stack';
import { action, type GlobalOptions } from '../command';
import { EXIT } from '../exit-codes';
import { colors as pc, note, printJson, renderTable } from '../output';
import { poolWarnings, type PoolWarning } from '../pool-warnings';

const ago = (iso: string) => {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 120 ? `${s} s ago` : s < 7200 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
};

function stateText(p: ProcessStatus): string {
  const text = p.crashLoop ? `crash-loop (${p.state})` : p.state;
  return p.running && !p.crashLoop ? pc.green(text) : p.state === 'refused' || p.crashLoop || p.state === 'exited' ? pc.red(text) : pc.yellow(text);
}

/** "restarted 2×, last: signal SIGKILL 40 s ago" for a process that ever ended. */
function history(p: ProcessStatus): string {
  if (!p.lastExit) return '';
  return `${p.restarts ? `restarted ${p.restarts}×, ` : ''}last exit: ${describeExit(p.lastExit)} ${ago(p.lastExit.at)}`;
}

export function renderStack(s: StackStatus & { poolWarnings?: PoolWarning[] }): string {
  const line = (p: ProcessStatus | undefined) => (p ? `${stateText(p)}${p.pid ? ` (pid ${p.pid})` : ''}${history(p) ? `  ${history(p)}` : ''}` : 'none');
  const sup = s.supervisor;
  const head = [
    `state dir   ${s.home}`,
    `supervisor  ${sup ? `${sup.running ? pc.green('running') : pc.red('not running')} (pid ${sup.pid}, ${sup.mode === 'foreground' ? 'kubedos dev' : 'daemon'})  log: ${sup.log}` : 'none'}`,
    `temporal    ${s.address} ${line(s.server)}${s.temporalVersion ? `  temporal ${s.temporalVersion}` : ''}`,
    `web ui      ${s.uiUrl}`,
    `codec       ${s.codecEndpoint ? `${s.codecEndpoint} ${line(s.codec)}` : 'none'}`,
  ].join('\n');
  const parts = [head];
  if (s.pools.length) {
    const rows = s.pools.map((p) => [p.pool, stateText(p), String(p.pid ?? '-'), String(p.restarts), p.lastExit ? `${describeExit(p.lastExit)} ${ago(p.lastExit.at)}` : '', (p.reason ?? '').split('\n').pop()!.slice(0, 140)]);
    parts.push(renderTable(['POOL', 'STATE', 'PID', 'RESTARTS', 'LAST EXIT', 'LAST LOG LINE'], rows));
  }
  const warnings = [...s.warnings, ...(s.poolWarnings ?? []).map((w) => w.message)];
  if (warnings.length) parts.push(warnings.map((w) => `${pc.yellow('warning')}: ${w}`).join('\n'));
  return parts.join('\n\n');
}

function print(s: StackStatus, json?: boolean): void {
  if (json) printJson(s);
  else process.stdout.write(`${renderStack(s)}\n`);
}

/** The stack's status, with the pools running fleets need and nobody serves (when the server answers). */
async function statusWithPools(): Promise<StackStatus & { poolWarnings?: PoolWarning[]; poolCheckError?: string }> {
  const s = stackStatus();
  if (!s.serverRunning) return s;
  try {
    const { client, close } = await connectClient({ startEmbedded: false });
    try {
      return { ...s, poolWarnings: await poolWarnings(client, s) };
    } finally {
      await close();
    }
  } catch (err) {
    return { ...s, poolCheckError: (err as Error).message };
  }
}

export function registerStack(program: Command): void {
  program
    .command('dev')
    .description('run the embedded stack (Temporal dev server + worker pools) in the foreground, supervised; Ctrl-C stops it')
    .option('--pools <list>', 'worker pools to run (default: KUBEDOS_POOLS or all)')
    .action(
      action(async (opts: { pools?: string }) => {
        const { status, supervision } = await runStackInForeground(opts.pools ? parsePoolList(opts.pools) : undefined);
        print(status);
        const codec = status.codecEndpoint ? `\nCodec endpoint: ${status.codecEndpoint} (the Web UI decrypts payloads through it; temporal --codec-endpoint too)` : '';
        note(`\nTemporal Web UI: ${status.uiUrl}${codec}\nCrashed processes are restarted. Press Ctrl-C to stop.`);
        await new Promise<void>((resolve) => {
          process.once('SIGINT', resolve);
          process.once('SIGTERM', resolve);
        });
        note('stopping the embedded stack…');
        await supervision.stop();
        return EXIT.ok;
      }),
    );

  const stack = program.command('stack').description('manage the embedded stack in the background (a supervisor daemon restarts what crashes)');
  stack
    .command('start')
    .description('start the embedded Temporal server and worker pools in the background (idempotent; retries pools that refused or crash)')
    .option('--json', 'print the status as JSON')
    .option('--pools <list>', 'worker pools to run (default: KUBEDOS_POOLS or all)')
    .action(
      action(async (opts: GlobalOptions & { pools?: string }) => {
        print(await startStack({ pools: opts.pools ? parsePoolList(opts.pools) : undefined, retry: true }), opts.json);
      }),
    );
  stack
    .command('stop')
    .description('stop the embedded stack; finished runs stay in its SQLite database')
    .option('--json', 'print the status as JSON')
    .action(action(async (opts: GlobalOptions) => print(await stopStack(), opts.json)));
  stack
    .command('status')
    .description('show what the embedded stack runs, restarts and crash loops, and pools running fleets need but nobody serves; exit 4 when the server is not running')
    .option('--json', 'print the status as JSON')
    .action(
      action(async (opts: GlobalOptions) => {
        const s = await statusWithPools();
        if (opts.json) printJson(s);
        else {
          process.stdout.write(`${renderStack(s)}\n`);
          if (s.poolCheckError) note(`could not check the pools' task queues: ${s.poolCheckError}`);
        }
        return s.serverRunning ? EXIT.ok : EXIT.unavailable;
      }),
    );
}
