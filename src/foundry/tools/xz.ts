/** xz: decompresses the kernel's xz payload. Builds argv only. */
import { runTool, type RunResult } from '../../exec/run';
import type { ToolOptions } from './common';

/**
 * Decompress `file` (which must end in `.xz`) to the same path without the suffix, removing the
 * input. `--single-stream` stops after the first stream and ignores what follows it (the kernel
 * appends the uncompressed size to its payload).
 */
export function xzDecompressArgv(file: string): string[] {
  return ['xz', '--decompress', '--single-stream', '--force', '--quiet', '--', file];
}

export function xzDecompress(file: string, options: ToolOptions = {}): Promise<RunResult> {
  if (!file.endsWith('.xz')) throw new TypeError(`xzDecompress: ${file} must end in .xz`);
  return runTool(xzDecompressArgv(file), options);
}
