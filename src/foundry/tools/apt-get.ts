/**
 * apt-get on the host against a private apt root (APT_CONFIG): resolves a package selection
 * against the archives without installing anything. Builds argv only.
 */
import { runTool, type RunResult } from '../../exec/run';
import type { ToolOptions } from './common';

export function aptGetUpdateArgv(): string[] {
  return ['apt-get', 'update', '-q'];
}

/** `apt-get update` with the configuration file `aptConfig`. */
export function aptGetUpdate(aptConfig: string, options: ToolOptions = {}): Promise<RunResult> {
  return runTool(aptGetUpdateArgv(), { ...options, env: { ...options.env, APT_CONFIG: aptConfig } });
}

/**
 * Print (do not download) every .deb an install of `selection` (package names and apt patterns)
 * would fetch, one `'URI' file size SHA256:hex` line each.
 */
export function aptGetPrintUrisArgv(selection: readonly string[]): string[] {
  return ['apt-get', 'install', '--print-uris', '-qq', '--yes', '-o', 'Acquire::ForceHash=SHA256', ...selection];
}

export function aptGetPrintUris(aptConfig: string, selection: readonly string[], options: ToolOptions = {}): Promise<RunResult> {
  return runTool(aptGetPrintUrisArgv(selection), { ...options, env: { ...options.env, APT_CONFIG: aptConfig } });
}
