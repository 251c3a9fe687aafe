/** debugfs: reads and edits an ext4 image without mounting it. Builds argv only. */
import { runTool, type RunResult } from '../../exec/run';
import type { ToolOptions } from './common';

/** Run a command file against the image, writable. `epoch` pins every time debugfs itself stamps. */
export function debugfsWriteArgv(image: string, commandFile: string): string[] {
  return ['debugfs', '-w', '-f', commandFile, image];
}

export function debugfsWrite(image: string, commandFile: string, epoch: number, options: ToolOptions = {}): Promise<RunResult> {
  return runTool(debugfsWriteArgv(image, commandFile), { ...options, env: { ...options.env, E2FSPROGS_FAKE_TIME: String(epoch) } });
}

/** One read-only request (e.g. `ls -l /etc/ssh`, `cat /etc/shadow`, `stat /x`). */
export function debugfsRequestArgv(image: string, request: string): string[] {
  return ['debugfs', '-R', request, image];
}

export function debugfsRequest(image: string, request: string, options: ToolOptions = {}): Promise<RunResult> {
  return runTool(debugfsRequestArgv(image, request), options);
}
