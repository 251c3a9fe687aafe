/** sfdisk: writes the GPT from a script on stdin. Builds argv only. */
import { runTool, type RunResult } from '../../exec/run';
import type { ToolOptions } from './common';

export function sfdiskArgv(disk: string): string[] {
  return ['sfdisk', '--quiet', '--no-reread', '--no-tell-kernel', '--wipe', 'never', '--wipe-partitions', 'never', disk];
}

export function sfdisk(disk: string, script: string, options: ToolOptions = {}): Promise<RunResult> {
  return runTool(sfdiskArgv(disk), { ...options, input: script });
}

export function sfdiskDumpArgv(disk: string): string[] {
  return ['sfdisk', '--dump', disk];
}

export function sfdiskDump(disk: string, options: ToolOptions = {}): Promise<RunResult> {
  return runTool(sfdiskDumpArgv(disk), options);
}
