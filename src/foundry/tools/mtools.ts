/** mtools (mmd, mcopy, mdir): populate a FAT image without mounting it. Builds argv only. */
import { runTool, type RunResult } from '../../exec/run';
import type { ToolOptions } from './common';

const MTOOLS_ENV = { MTOOLS_SKIP_CHECK: '1' };

export function mmdArgv(image: string, dir: string): string[] {
  return ['mmd', '-i', image, `::${dir}`];
}

export function mmd(image: string, dir: string, options: ToolOptions = {}): Promise<RunResult> {
  return runTool(mmdArgv(image, dir), { ...options, env: { ...options.env, ...MTOOLS_ENV } });
}

/** Copy a host file into the image; `-m` keeps the (clamped) mtime of the source. */
export function mcopyArgv(image: string, source: string, dest: string): string[] {
  return ['mcopy', '-m', '-o', '-i', image, source, `::${dest}`];
}

export function mcopy(image: string, source: string, dest: string, options: ToolOptions = {}): Promise<RunResult> {
  return runTool(mcopyArgv(image, source, dest), { ...options, env: { ...options.env, ...MTOOLS_ENV } });
}

export function mdirArgv(image: string, dir: string): string[] {
  return ['mdir', '-i', image, '-/', `::${dir}`];
}

export function mdir(image: string, dir: string, options: ToolOptions = {}): Promise<RunResult> {
  return runTool(mdirArgv(image, dir), { ...options, env: { ...options.env, ...MTOOLS_ENV } });
}
