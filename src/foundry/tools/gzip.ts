/**
 * gzip streams by pigz: the same format every gzip reader takes, compressed on every core. Its
 * output depends only on the input, the level and the block size — not on how many threads made
 * it (each 128 KiB block is primed with the previous one's last 32 KiB, whoever compressed it) —
 * so artifacts stay bit-identical from one build host to another. `--no-name` leaves the name and
 * time stamp out of the header. Builds argv only.
 */
import { availableParallelism } from 'node:os';
import { runTool, type RunResult } from '../../exec/run';
import type { ToolOptions } from './common';

/** Compress `file` in place to `file.gz` (the input is removed). @default level 6 */
export function gzipArgv(file: string, level = 6, threads = availableParallelism()): string[] {
  return ['pigz', '--no-name', `-${level}`, '--processes', String(threads), '--force', '--quiet', '--', file];
}

export function gzip(file: string, level = 6, options: ToolOptions = {}): Promise<RunResult> {
  return runTool(gzipArgv(file, level), options);
}
