import type { RunOptions } from '../../exec/run';

/** Run options a step may pass through to a tool module. */
export type ToolOptions = Pick<RunOptions, 'signal' | 'onOutput' | 'sourceDateEpoch' | 'env' | 'cwd' | 'timeoutMs'>;
