/** cp: whole-file sparse copies (SEEK_DATA/SEEK_HOLE + copy_file_range in the kernel). Builds argv only. */
import { runTool, type RunResult } from '../../exec/run';
import type { ToolOptions } from './common';

export function cpSparseArgv(src: string, dst: string): string[] {
  return ['cp', '--sparse=always', '--reflink=auto', src, dst];
}

export function cpSparse(src: string, dst: string, options: ToolOptions = {}): Promise<RunResult> {
  return runTool(cpSparseArgv(src, dst), options);
}

/** A directory tree copied whole: ownership, modes, times, hard links and extended attributes. */
export function cpTreeArgv(src: string, dst: string): string[] {
  return ['cp', '--archive', '--reflink=auto', '--', src, dst];
}

export function cpTree(src: string, dst: string, options: ToolOptions = {}): Promise<RunResult> {
  return runTool(cpTreeArgv(src, dst), options);
}
