/** Walks over a directory tree that make it reproducible: clamped times, a stable listing. */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';

/** Clamp every mtime (and atime) newer than the epoch down to it; symlinks included. */
export async function clampMtimes(root: string, epoch: number): Promise<void> {
  const stack = [root];
  while (stack.length > 0) {
    const dir = stack.pop()!;
    for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
      const p = path.join(dir, entry.name);
      if (entry.isDirectory()) stack.push(p);
      const st = await fs.lstat(p);
      if (st.mtimeMs / 1000 > epoch || st.atimeMs / 1000 > epoch) await fs.lutimes(p, epoch, Math.min(st.mtimeMs / 1000, epoch));
    }
  }
  const st = await fs.lstat(root);
  await fs.lutimes(root, epoch, Math.min(st.mtimeMs / 1000, epoch));
}

/** Every path of a tree, relative with a leading `/`, in a stable order (for the debugfs sweep). */
export async function listTree(root: string): Promise<string[]> {
  const out: string[] = ['/'];
  const walk = async (dir: string, rel: string): Promise<void> => {
    const entries = (await fs.readdir(dir, { withFileTypes: true })).map((e) => e).sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const e of entries) {
      const r = `${rel}/${e.name}`;
      out.push(r);
      if (e.isDirectory()) await walk(path.join(dir, e.name), r);
    }
  };
  await walk(root, '');
  return out;
}
