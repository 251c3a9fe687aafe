/**
 * The data extents of a (sparse) file, from the kernel's SEEK_DATA/SEEK_HOLE (which, unlike
 * FIEMAP, accounts for dirty, not yet allocated pages). Node has no lseek, so a few lines of perl
 * (perl-base is Essential on Debian) print one `start end` line per extent. Builds argv only.
 */
import { runTool, type RunResult } from '../../exec/run';
import type { ToolOptions } from './common';

const SCRIPT = [
  'open(my $f, "<", $ARGV[0]) or die "$ARGV[0]: $!\\n";',
  'my $size = -s $f; my $pos = 0;',
  'while ($pos < $size) {',
  '  my $d = sysseek($f, $pos, 3);',
  '  if (!defined $d) { last if $!{ENXIO}; die "SEEK_DATA: $!\\n"; }',
  '  my $h = sysseek($f, $d, 4);',
  '  die "SEEK_HOLE: $!\\n" unless defined $h;',
  '  printf "%d %d\\n", $d, $h; $pos = $h;',
  '}',
].join('\n');

export function dataExtentsArgv(file: string): string[] {
  return ['perl', '-e', SCRIPT, file];
}

/** Resolves with `start end` lines (byte offsets, end exclusive), ascending. */
export function dataExtents(file: string, options: ToolOptions = {}): Promise<RunResult> {
  return runTool(dataExtentsArgv(file), options);
}
