/** mmdebstrap: creates the Debian root filesystem tree. Builds argv only. */
import { runTool, type RunResult } from '../../exec/run';
import type { ToolOptions } from './common';

export interface MmdebstrapArgs {
  suite: string;
  /** Output directory (root mode writes a plain tree). */
  target: string;
  /** A sources.list file (one or more `deb` lines); mmdebstrap reads it as the mirror argument. */
  sourcesFile: string;
  /** @default 'minbase' */
  variant?: 'minbase' | 'essential' | 'apt' | 'required' | 'important' | 'standard' | 'custom';
  /** @default 'root' */
  mode?: 'root' | 'unshare' | 'auto';
  architecture: string;
  include: readonly string[];
  dpkgOptions?: readonly string[];
  aptOptions?: readonly string[];
  setupHooks?: readonly string[];
  essentialHooks?: readonly string[];
  customizeHooks?: readonly string[];
  skip?: readonly string[];
}

export function mmdebstrapArgv(a: MmdebstrapArgs): string[] {
  const argv = ['mmdebstrap', `--mode=${a.mode ?? 'root'}`, `--variant=${a.variant ?? 'minbase'}`, `--architectures=${a.architecture}`];
  if (a.include.length > 0) argv.push(`--include=${a.include.join(',')}`);
  for (const o of a.dpkgOptions ?? []) argv.push(`--dpkgopt=${o}`);
  for (const o of a.aptOptions ?? []) argv.push(`--aptopt=${o}`);
  for (const h of a.setupHooks ?? []) argv.push(`--setup-hook=${h}`);
  for (const h of a.essentialHooks ?? []) argv.push(`--essential-hook=${h}`);
  for (const h of a.customizeHooks ?? []) argv.push(`--customize-hook=${h}`);
  for (const s of a.skip ?? []) argv.push(`--skip=${s}`);
  argv.push(a.suite, a.target, a.sourcesFile);
  return argv;
}

export function mmdebstrap(a: MmdebstrapArgs, options: ToolOptions = {}): Promise<RunResult> {
  return runTool(mmdebstrapArgv(a), options);
}
