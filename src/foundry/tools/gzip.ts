/**
 * gzip: compresses artifacts. `-n` leaves the name and time stamp out of the header, so the
 * output depends only on the input bytes (and gzip's version). Builds argv only.
 */
import { runTool, type RunResult } from '../../exec/run';
import type { ToolOptions } from './common';

/** Compress `file` in place to `file.gz` (the input is removed). @default level 6 */
export function gzipArgv(file: string, level = 6): string[] {
  return ['gzip', '--no-name', `-${level}`, '--force', '--quiet', '--', file];
}

export function gzip(file: string, level = 6, options: ToolOptions = {}): Promise<RunResult> {
  return runTool(gzipArgv(file, level), options);
}
