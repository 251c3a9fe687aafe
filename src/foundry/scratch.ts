/**
 * Removing a build's scratch trees safely. mmdebstrap mounts proc, sys, devpts and a shm inside
 * the tree it builds; a build killed with SIGKILL (or cancelled mid-install) leaves them mounted,
 * and a recursive remove would then walk into the host's /proc, /sys or /dev/pts. So every
 * scratch tree is removed by first unmounting whatever is mounted at or below it (deepest first),
 * and the next build sweeps the staging trees of builds that are no longer running.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { isOurProcess } from '../exec/daemon';
import { umount } from './tools/umount';

/** A mount point as /proc/self/mountinfo writes it: space, tab, newline and backslash octal-escaped. */
function unescapeMountPath(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Mount points at or below `dir`, deepest first. */
export async function mountsUnder(dir: string, mountinfo = '/proc/self/mountinfo'): Promise<string[]> {
  const root = path.resolve(dir);
  const text = await fs.readFile(mountinfo, 'utf8').catch(() => '');
  const points = text
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((field): field is string => Boolean(field))
    .map(unescapeMountPath)
    .filter((p) => p === root || p.startsWith(`${root}/`));
  return [...new Set(points)].sort((a, b) => b.split('/').length - a.split('/').length || b.localeCompare(a));
}

/** Unmount everything at or below `dir` (lazily when busy), then remove it. Absent is fine. */
export async function removeScratchTree(dir: string, options: { signal?: AbortSignal } = {}): Promise<void> {
  // Stacked mounts (a tmpfs over a bind) show the same point twice: unmount until none is left.
  for (let round = 0; round < 8; round++) {
    const points = await mountsUnder(dir);
    if (!points.length) break;
    for (const point of points) {
      await umount(point, { signal: options.signal }).catch(() => umount(point, { lazy: true, signal: options.signal }));
    }
  }
  const left = await mountsUnder(dir);
  if (left.length) throw new Error(`${dir}: still mounted after unmounting: ${left.join(', ')}`);
  await fs.rm(dir, { recursive: true, force: true });
}

/** Staging trees (`<prefix><pid>-…`) whose build is no longer running, removed; returns their paths. */
export async function sweepStaleStaging(parent: string, prefix: string, options: { signal?: AbortSignal } = {}): Promise<string[]> {
  const names = await fs.readdir(parent).catch(() => [] as string[]);
  const stale = names.filter((name) => {
    const m = new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(\\d+)-`).exec(name);
    // A live build of this or another process keeps its tree; a pid that is gone, or now belongs
    // to something that is not node, left its tree behind.
    return m && (Number(m[1]) === process.pid ? false : !isOurProcess(Number(m[1]), 'node'));
  });
  for (const name of stale) await removeScratchTree(path.join(parent, name), options);
  return stale.map((name) => path.join(parent, name));
}
