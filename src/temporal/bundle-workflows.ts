/**
 * Bundle the workflow code once (at setup, and once per test run) so workers start without
 * re-bundling: `node dist/src/temporal/bundle-workflows.js OUT.js`.
 */
import { writeFileSync, renameSync } from 'node:fs';
import path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';

export async function bundleWorkflows(outFile: string): Promise<string> {
  const { code } = await bundleWorkflowCode({
    workflowsPath: require.resolve('../../workflows'),
    logger: { trace() {}, debug() {}, info() {}, warn: console.warn, error: console.error, log() {} } as never,
  });
  const tmp = `${outFile}.${process.pid}.tmp`;
  writeFileSync(tmp, code);
  renameSync(tmp, outFile);
  return outFile;
}

if (require.main === module) {
  const out = path.resolve(process.argv[2] ?? 'dist/workflow-bundle.js');
  bundleWorkflows(out).catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
