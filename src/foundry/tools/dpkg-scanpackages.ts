/** dpkg-scanpackages: indexes a directory of .debs as a flat apt repository. Builds argv only. */
import { runTool, type RunResult } from '../../exec/run';
import type { ToolOptions } from './common';

export function dpkgScanpackagesArgv(): string[] {
  return ['dpkg-scanpackages', '--multiversion', '.', '/dev/null'];
}

/** Run in `dir`; resolves with the Packages index on stdout. */
export function dpkgScanpackages(dir: string, options: ToolOptions = {}): Promise<RunResult> {
  return runTool(dpkgScanpackagesArgv(), { ...options, cwd: dir });
}
