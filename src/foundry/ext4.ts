/**
 * The root filesystem without mounts. A base ext4 image is made once per layer and size with
 * `mkfs.ext4 -d` (E2FSPROGS_FAKE_TIME, fixed UUID and hash seed derived from the layer digest)
 * plus a debugfs sweep setting every inode's atime and ctime to the epoch (mkfs copies them
 * from the host tree); it goes into the cached base disk (disk.ts). Each build applies its
 * payload to its own copy of that disk with one debugfs command file (every stamped time is the
 * epoch: E2FSPROGS_FAKE_TIME), so the cached layer is never touched.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { BuildFailedError } from '../errors';
import type { BuildContext, Layer } from './context';
import { renderPayload, type PayloadEntry } from './payload';
import { listTree } from './tree';
import { debugfsWrite } from './tools/debugfs';
import { mkfsExt4 } from './tools/mkfs';

/** Quote a path for a debugfs command file (ss parser: `""` is a literal quote, backslashes are literal). */
function q(p: string): string {
  if (/\n/.test(p)) throw new BuildFailedError(`path ${JSON.stringify(p)} cannot be written by debugfs (newline)`);
  return `"${p.replace(/"/g, '""')}"`;
}

/** Run a debugfs command file; debugfs exits 0 on failed commands, so its stderr is checked. */
async function runDebugfs(ctx: BuildContext, image: string, commands: string[], what: string): Promise<void> {
  const cmdFile = path.join(ctx.workDir, `debugfs-${what}.cmds`);
  await fs.writeFile(cmdFile, `${commands.join('\n')}\n`);
  const { stderr } = await debugfsWrite(image, cmdFile, ctx.plan.sourceDateEpoch, { signal: ctx.options.signal });
  const problems = stderr.split('\n').filter((l) => l.trim() !== '' && !/^debugfs \d/.test(l));
  if (problems.length > 0) throw new BuildFailedError(`debugfs (${what}) reported:\n${problems.slice(0, 20).join('\n')}`);
}

/**
 * Make the base ext4 of a layer: mkfs.ext4 -d, then every inode's atime/ctime set to the epoch.
 * With `offsetBytes`, it is made in place inside `out` (the disk, already sized) at that offset:
 * the same bytes as a filesystem made in a file of its own and copied there, without the copy.
 */
export async function makeBaseExt4(ctx: BuildContext, layer: Layer, out: string, sizeKiB: number, uuid: string, hashSeed: string, offsetBytes?: number): Promise<void> {
  if (offsetBytes === undefined) await fs.rm(out, { force: true });
  await mkfsExt4(
    { image: out, sizeKiB, sourceDir: layer.rootfs, label: 'root', epoch: ctx.plan.sourceDateEpoch, uuid, hashSeed, offsetBytes },
    { signal: ctx.options.signal },
  );
  const epoch = `@${ctx.plan.sourceDateEpoch}`;
  const sweep: string[] = [];
  for (const p of await listTree(layer.rootfs)) sweep.push(`sif ${q(p)} atime ${epoch}`, `sif ${q(p)} ctime ${epoch}`);
  sweep.push(`sif "/lost+found" atime ${epoch}`, `sif "/lost+found" ctime ${epoch}`, `sif "/lost+found" mtime ${epoch}`);
  await runDebugfs(ctx, offsetBytes === undefined ? out : `${out}?offset=${offsetBytes}`, sweep, 'sweep');
}

/** Resolve an image path's parent directories through the layer's symlinks (e.g. /lib → usr/lib). */
async function canonicalPath(root: string, imagePath: string): Promise<string> {
  const parts = imagePath.split('/').filter(Boolean);
  const name = parts.pop();
  let resolved: string[] = [];
  let hops = 0;
  const queue = [...parts];
  while (queue.length > 0) {
    const part = queue.shift()!;
    const candidate = [...resolved, part];
    const st = await fs.lstat(path.join(root, ...candidate)).catch(() => undefined);
    if (st?.isSymbolicLink()) {
      if (++hops > 40) throw new BuildFailedError(`too many symlinks resolving ${imagePath}`);
      const target = await fs.readlink(path.join(root, ...candidate));
      const tparts = target.split('/').filter((x) => x && x !== '.');
      if (target.startsWith('/')) resolved = [];
      const rest: string[] = [];
      for (const t of tparts) rest.push(t);
      queue.unshift(...rest);
      continue;
    }
    if (part === '..') resolved.pop();
    else resolved = candidate;
  }
  return `/${[...resolved, name].filter(Boolean).join('/')}`;
}

function parseIds(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length >= 3 && f[0]) out.set(f[0], Number(f[2]));
  }
  return out;
}

/**
 * Step: write the payload into the root filesystem in place. `fsImage` is an ext4 image path,
 * optionally `disk.raw?offset=<bytes>` (debugfs io option) to edit it inside the disk.
 */
export async function applyPayload(ctx: BuildContext, fsImage: string, rootFsUuid: string): Promise<void> {
  const layer = ctx.layer!;
  const root = layer.rootfs;
  const out = fsImage;
  const users = parseIds(await fs.readFile(path.join(root, 'etc/passwd'), 'utf8'));
  const groups = parseIds(await fs.readFile(path.join(root, 'etc/group'), 'utf8'));
  const owner = (spec: string, where: string): [number, number] => {
    const [u, g] = spec.split(':') as [string, string];
    const uid = /^\d+$/.test(u) ? Number(u) : users.get(u);
    const gid = /^\d+$/.test(g) ? Number(g) : groups.get(g);
    if (uid === undefined || gid === undefined) throw new BuildFailedError(`${where}: owner ${spec} is not a user:group of the image`);
    return [uid, gid];
  };

  const entries: PayloadEntry[] = renderPayload(ctx.plan, { inputDigest: ctx.inputDigest!, rootFsUuid });
  const existsInLayer = async (p: string) => fs.lstat(path.join(root, p)).then((s) => s, () => undefined);
  const created = new Set<string>();
  const touched = new Set<string>();
  const contentDir = path.join(ctx.workDir, 'payload');
  await fs.mkdir(contentDir, { recursive: true });
  const cmds: string[] = [];
  const ensureDir = async (dir: string): Promise<void> => {
    if (dir === '/' || created.has(dir)) return;
    const st = await existsInLayer(dir);
    if (st?.isDirectory()) return;
    if (st) throw new BuildFailedError(`payload: ${dir} exists in the image and is not a directory`);
    await ensureDir(path.posix.dirname(dir));
    cmds.push(`mkdir ${q(dir)}`, `sif ${q(dir)} mode 040755`, `sif ${q(dir)} uid 0`, `sif ${q(dir)} gid 0`);
    created.add(dir);
    touched.add(dir);
  };
  const replace = async (p: string): Promise<void> => {
    if (created.has(p)) throw new BuildFailedError(`payload: ${p} is written twice`);
    const st = await existsInLayer(p);
    if (st?.isDirectory()) throw new BuildFailedError(`payload: ${p} is a directory in the image`);
    if (st) cmds.push(`rm ${q(p)}`);
  };

  let n = 0;
  for (const entry of entries) {
    const p = await canonicalPath(root, entry.path);
    const parent = path.posix.dirname(p);
    await ensureDir(parent);
    touched.add(parent);
    if (entry.kind === 'dir') {
      await ensureDir(p);
      const [uid, gid] = owner(entry.owner, p);
      cmds.push(`sif ${q(p)} mode 0${(0o40000 | entry.mode).toString(8)}`, `sif ${q(p)} uid ${uid}`, `sif ${q(p)} gid ${gid}`);
      touched.add(p);
      continue;
    }
    await replace(p);
    if (entry.kind === 'symlink') {
      cmds.push(`symlink ${q(p)} ${q(entry.target)}`);
    } else {
      const [uid, gid] = owner(entry.owner, p);
      const host = path.join(contentDir, String(n++));
      await fs.writeFile(host, entry.content);
      cmds.push(`cd ${q(parent)}`, `write ${q(host)} ${q(path.posix.basename(p))}`, 'cd /');
      cmds.push(`sif ${q(p)} mode 0${(0o100000 | entry.mode).toString(8)}`, `sif ${q(p)} uid ${uid}`, `sif ${q(p)} gid ${gid}`);
    }
    created.add(p);
    touched.add(p);
  }
  const epoch = `@${ctx.plan.sourceDateEpoch}`;
  for (const p of [...touched].sort()) for (const f of ['atime', 'mtime', 'ctime', 'crtime']) cmds.push(`sif ${q(p)} ${f} ${epoch}`);
  await runDebugfs(ctx, out, cmds, 'payload');
}
