/** grub-mkimage: a GRUB core image with an embedded early config (deterministic). Builds argv only. */
import { runTool, type RunResult } from '../../exec/run';
import type { ToolOptions } from './common';

export interface GrubMkimageArgs {
  /** e.g. `x86_64-efi`. */
  format: 'x86_64-efi' | 'i386-pc-eltorito';
  out: string;
  /** Config embedded in the image, run before the prefix's grub.cfg. */
  earlyConfig: string;
  /** Directory of the modules on the boot medium, e.g. `/boot/grub`. */
  prefix: string;
  modules: readonly string[];
}

export function grubMkimageArgv(a: GrubMkimageArgs): string[] {
  return ['grub-mkimage', '-O', a.format, '-o', a.out, '-c', a.earlyConfig, '-p', a.prefix, ...a.modules];
}

export function grubMkimage(a: GrubMkimageArgs, options: ToolOptions = {}): Promise<RunResult> {
  return runTool(grubMkimageArgv(a), options);
}
