/** zstd: decompresses zstd payloads (kernels, initramfs archives). Builds argv only. */
import { runTool, type RunResult } from '../../exec/run';
import type { ToolOptions } from './common';

export function zstdDecompressArgv(input: string, output: string): string[] {
  return ['zstd', '--decompress', '--quiet', '--force', '-o', output, '--', input];
}

export function zstdDecompress(input: string, output: string, options: ToolOptions = {}): Promise<RunResult> {
  return runTool(zstdDecompressArgv(input, output), options);
}
