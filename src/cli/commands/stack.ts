/** `kubedos dev` (the embedded stack in the foreground) and `kubedos stack start|stop|status`. */
import type { Command } from 'commander';
import { parsePoolList } from '../../pools/pools';
import { startStack, stackStatus, stopStack, type StackStatus } from '../../temporal/stack';
import { action, type GlobalOptions } from '../command';
import { EXIT } from '../exit-codes';
import { colors as pc, note, printJson, renderTable } from '../output';

export function renderStack(s: StackStatus): string {
  const head = [
    `state dir   ${s.home}`,
    `temporal    ${s.address} ${s.serverRunning ? pc.green(`running (pid ${s.serverPid})`) : pc.red('stopped')}${s.temporalVersion ? `  temporal ${s.temporalVersion}` : ''}`,
    `web ui      ${s.uiUrl}`,
    `codec       ${s.codecEndpoint ? `${s.codecEndpoint} ${s.codecRunning ? pc.green('running') : pc.red('stopped')}` : 'none'}`,
  ].join('\n');
  if (!s.pools.length) return head;
  const rows = s.pools.map((p) => [
    p.pool,
    p.running ? pc.green('running') : pc.red('exited'),
    String(p.pid ?? '-'),
    p.running ? '' : (p.reason ?? '').split('\n').pop()!.slice(0, 160),
  ]);
  return `${head}\n\n${renderTable(['POOL', 'STATE', 'PID', 'LAST LOG LINE'], rows)}`;
}

function print(s: StackStatus, json?: boolean): void {
  if (json) printJson(s);
  else process.stdout.write(`${renderStack(s)}\n`);
}

export function registerStack(program: Command): void {
  program
    .command('dev')
    .description('run the embedded stack (Temporal dev server + worker pools) in the foreground; Ctrl-C stops it')
    .option('--pools <list>', 'worker pools to run (default: KUBEDOS_POOLS or all)')
    .action(
      action(async (opts: { pools?: string }) => {
        const status = await startStack({ detached: false, pools: opts.pools ? parsePoolList(opts.pools) : undefined });
        print(status);
        const codec = status.codecEndpoint ? `\nCodec endpoint: ${status.codecEndpoint} (the Web UI decrypts payloads through it; temporal --codec-endpoint too)` : '';
        note(`\nTemporal Web UI: ${status.uiUrl}${codec}\nPress Ctrl-C to stop.`);
        await new Promise<void>((resolve) => {
          process.once('SIGINT', resolve);
          process.once('SIGTERM', resolve);
        });
        note('stopping the embedded stack…');
        await stopStack();
        return EXIT.ok;
      }),
    );

  const stack = program.command('stack').description('manage the embedded stack in the background');
  stack
    .command('start')
    .description('start the embedded Temporal server and worker pools in the background (idempotent)')
    .option('--json', 'print the status as JSON')
    .option('--pools <list>', 'worker pools to run (default: KUBEDOS_POOLS or all)')
    .action(
      action(async (opts: GlobalOptions & { pools?: string }) => {
        print(await startStack({ detached: true, pools: opts.pools ? parsePoolList(opts.pools) : undefined }), opts.json);
      }),
    );
  stack
    .command('stop')
    .description('stop the embedded stack; finished runs stay in its SQLite database')
    .option('--json', 'print the status as JSON')
    .action(action(async (opts: GlobalOptions) => print(await stopStack(), opts.json)));
  stack
    .command('status')
    .description('show what the embedded stack runs; exit 4 when the server is not running')
    .option('--json', 'print the status as JSON')
    .action(
      action(async (opts: GlobalOptions) => {
        const s = stackStatus();
        print(s, opts.json);
        return s.serverRunning ? EXIT.ok : EXIT.unavailable;
      }),
    );
}
