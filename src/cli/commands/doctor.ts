/** `kubedos doctor`: a real workflow asks every pool for its probe; prints the capability table. */
import type { Command } from 'commander';
import type { Duration } from '@temporalio/common';
import { ConfigError } from '../../errors';
import type { PoolReport, doctor as doctorWorkflow } from '../../../workflows/doctor';
import { POOLS, POOL_NAMES, parsePoolList, type PoolName } from '../../pools/pools';
import { connectClient } from '../../temporal/client';
import { workflowUiLink } from '../../temporal/connection';
import { action, type GlobalOptions } from '../command';
import { EXIT } from '../exit-codes';
import { withQueryProgress } from '../progress';
import { colors as pc, note, printJson, renderTable } from '../output';

/** Pools the main job needs; the others are reported but do not fail doctor. */
const DEFAULT_REQUIRED: PoolName[] = ['control', 'build', 'kvm'];

function stateCell(r: PoolReport): string {
  if (r.state === 'ok') return pc.green('ok');
  if (r.state === 'degraded') return pc.yellow('degraded');
  return pc.red('unreachable');
}

/** The plug-ins a pool runs, those it cannot run here in red. */
function servesCell(plugins: PoolReport['probe'] extends infer P ? (P extends { plugins: infer L } ? L : never) : never): string {
  if (!plugins.length) return '-';
  return plugins.map((p) => (p.ok ? p.name : pc.red(p.name))).join(', ');
}

export function renderDoctor(reports: PoolReport[]): string {
  const summary = renderTable(
    ['POOL', 'QUEUE', 'STATE', 'HOST', 'ACCEL', 'TOOLS', 'SERVES', 'NOTES'],
    reports.map((r) => {
      const tools = r.probe?.tools ?? [];
      const found = tools.filter((t) => t.found).length;
      return [
        r.pool,
        r.taskQueue,
        stateCell(r),
        r.probe ? `${r.probe.host}:${r.probe.pid}` : '-',
        r.probe?.accel ? `${r.probe.accel.mode}${r.probe.accel.mode === 'tcg' ? ` (${r.probe.accel.reason})` : ''}` : '-',
        r.probe ? `${found}/${tools.length}` : '-',
        r.probe ? servesCell(r.probe.plugins) : '-',
        r.error ?? r.probe?.missing.join('; ') ?? '',
      ];
    }),
  );
  const toolRows = reports.flatMap((r) =>
    (r.probe?.tools ?? []).map((t) => [r.pool, t.name, t.found ? (t.version ?? '?') : pc.red('missing'), t.path ?? '-']),
  );
  return toolRows.length ? `${summary}\n\n${renderTable(['POOL', 'TOOL', 'VERSION', 'PATH'], toolRows)}` : summary;
}

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('run a workflow that asks every worker pool what it can do, and print the capability table')
    .option('--json', 'print the reports as JSON on stdout')
    .option('--pools <list>', `pools to ask (${POOL_NAMES.join(',')})`, POOL_NAMES.join(','))
    .option('--require <list>', 'pools that must be ok for exit code 0', DEFAULT_REQUIRED.join(','))
    .option('--pickup-timeout <duration>', 'how long a pool may take to pick up the probe', '8s')
    .action(
      action(async (opts: GlobalOptions & { pools: string; require: string; pickupTimeout: string }) => {
        const pools = parsePoolList(opts.pools);
        if (!/^\d+(ms|s|m)$/.test(opts.pickupTimeout)) {
          throw new ConfigError(`--pickup-timeout: "${opts.pickupTimeout}" is not a duration`, 'use a number with ms, s or m, for example 8s');
        }
        const required = parsePoolList(opts.require);
        const { client, settings, close } = await connectClient();
        try {
          const workflowId = `kubedos-doctor-${new Date().toISOString().replace(/[:.]/g, '-')}`;
          const handle = await client.workflow.start<typeof doctorWorkflow>('doctor', {
            taskQueue: POOLS.control.taskQueue,
            workflowId,
            args: [{ pools, pickupTimeout: opts.pickupTimeout as Duration }],
            workflowExecutionTimeout: '5m',
          });
          const uiUrl = workflowUiLink(settings, workflowId, handle.firstExecutionRunId);
          note(`workflow ${workflowId} started${uiUrl ? `: ${uiUrl}` : ''}`);
          const reports = await withQueryProgress(
            handle,
            'doctorStatus',
            (s) => ({ done: (s as { done: number }).done, total: (s as { total: number }).total }),
            handle.result(),
            { enabled: !opts.json, title: 'probing pools' },
          );
          const failing = reports.filter((r) => required.includes(r.pool) && r.state !== 'ok');
          if (opts.json) {
            printJson({ workflowId, runId: handle.firstExecutionRunId, uiUrl, address: settings.address, namespace: settings.namespace, required, pools: reports });
          } else {
            process.stdout.write(`${renderDoctor(reports)}\n`);
            if (failing.length) {
              note(pc.red(`required pool${failing.length > 1 ? 's' : ''} not ready: ${failing.map((f) => f.pool).join(', ')}`));
            }
          }
          return failing.length ? EXIT.capabilityMissing : EXIT.ok;
        } finally {
          await close();
        }
      }),
    );
}
