/**
 * mformat (mtools): a small FAT12 image, e.g. an El Torito UEFI boot image. mkfs.vfat (mkfs.ts)
 * makes FAT32, whose minimum size (~33 MiB) would be dead weight on an ISO. Builds argv only.
 */
import { runTool, type RunResult } from '../../exec/run';
import type { ToolOptions } from './common';

export interface MformatArgs {
  image: string;
  /** Size in KiB of a floppy geometry mformat knows (1440 or 2880). */
  sizeKiB: 1440 | 2880;
  /** 8 hex digits: the volume serial number (random unless given). */
  serial: string;
  label: string;
}

export function mformatArgv(a: MformatArgs): string[] {
  return ['mformat', '-i', a.image, '-C', '-f', String(a.sizeKiB), '-N', a.serial, '-v', a.label, '::'];
}

/** Timestamps come from SOURCE_DATE_EPOCH (`options.sourceDateEpoch`). */
export function mformat(a: MformatArgs, options: ToolOptions = {}): Promise<RunResult> {
  return runTool(mformatArgv(a), { ...options, env: { ...options.env, MTOOLS_SKIP_CHECK: '1' } });
}
