/** umount (util-linux): detach one mount point. Builds argv only. */
import { runTool, type RunResult } from '../../exec/run';
import type { ToolOptions } from './common';

/** `--lazy` detaches a busy mount too (a killed build's processes may still hold it). */
export function umountArgv(mountPoint: string, lazy = false): string[] {
  return ['umount', ...(lazy ? ['--lazy'] : []), '--', mountPoint];
}

export function umount(mountPoint: string, options: ToolOptions & { lazy?: boolean } = {}): Promise<RunResult> {
  return runTool(umountArgv(mountPoint, options.lazy), options);
}
