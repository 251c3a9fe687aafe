/** mkfs.ext4 and mkfs.vfat. Builds argv only. */
import { runTool, type RunResult } from '../../exec/run';
import type { ToolOptions } from './common';

export interface MkfsExt4Args {
  image: string;
  /** Filesystem size in KiB. */
  sizeKiB: number;
  /** Populate from this directory (`-d`). */
  sourceDir: string;
  uuid: string;
  hashSeed: string;
  label: string;
  /** E2FSPROGS_FAKE_TIME: e2fsprogs 1.47.0 ignores SOURCE_DATE_EPOCH. */
  epoch: number;
  /**
   * Make the filesystem at this byte offset of `image` (an existing, sized file, e.g. a disk at
   * its partition's offset) instead of making `image` itself. `nodiscard` goes with it: mke2fs
   * would otherwise punch the range and then mark the inode tables zeroed, which a filesystem
   * made in a file of its own is not, so the bytes would differ.
   */
  offsetBytes?: number;
}

export function mkfsExt4Argv(a: MkfsExt4Args): string[] {
  return [
    'mkfs.ext4', '-q', '-F', '-b', '4096', '-I', '256', '-L', a.label, '-U', a.uuid,
    '-E', `${a.offsetBytes === undefined ? '' : `offset=${a.offsetBytes},nodiscard,`}hash_seed=${a.hashSeed},lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0`,
    '-d', a.sourceDir, a.image, `${a.sizeKiB}k`,
  ];
}

export function mkfsExt4(a: MkfsExt4Args, options: ToolOptions = {}): Promise<RunResult> {
  return runTool(mkfsExt4Argv(a), { ...options, env: { ...options.env, E2FSPROGS_FAKE_TIME: String(a.epoch) } });
}

export interface MkfsVfatArgs {
  image: string;
  sizeKiB: number;
  /** 8 hex digits. */
  volumeId: string;
  label: string;
}

export function mkfsVfatArgv(a: MkfsVfatArgs): string[] {
  return ['mkfs.vfat', '--invariant', '-i', a.volumeId, '-F', '32', '-n', a.label, '-C', a.image, String(a.sizeKiB)];
}

export function mkfsVfat(a: MkfsVfatArgs, options: ToolOptions = {}): Promise<RunResult> {
  return runTool(mkfsVfatArgv(a), options);
}
