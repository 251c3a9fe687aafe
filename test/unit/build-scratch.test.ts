/**
 * Removing scratch trees after a killed build, with real mounts (the suite runs as root): what
 * mmdebstrap left mounted inside a staging tree is unmounted before the tree goes, so the remove
 * never reaches into what the mounts expose; stale trees of builds that are gone are swept.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { mountsUnder, removeScratchTree, sweepStaleStaging } from '../../src/foundry/scratch';

const root = process.getuid?.() === 0;
const maybe = root ? test : test.skip;
let tmp: string;

beforeEach(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'kubedos-scratch-'));
});
afterEach(() => {
  // Belt and braces: never leave a test mount behind, whatever failed.
  for (const p of readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter((p) => p?.startsWith(tmp))) spawnSync('umount', ['--lazy', p!]);
  rmSync(tmp, { recursive: true, force: true });
});

/** A pid that no process has now (a child that has exited). */
function deadPid(): number {
  const child = spawnSync('sh', ['-c', 'echo $$'], { encoding: 'utf8' });
  return Number(child.stdout.trim());
}

/** What a SIGKILLed mmdebstrap leaves: a tree with a bind mount (standing in for /dev/pts) and a tmpfs (/dev/shm) in it. */
function killedBuildTree(name: string): { tree: string; hostSide: string } {
  const tree = path.join(tmp, 'layers', name);
  const hostSide = path.join(tmp, 'host-pts');
  mkdirSync(hostSide, { recursive: true });
  writeFileSync(path.join(hostSide, 'ptmx'), 'the host\'s, not the build\'s');
  for (const d of ['rootfs/dev/pts', 'rootfs/dev/shm', 'rootfs/proc']) mkdirSync(path.join(tree, d), { recursive: true });
  execFileSync('mount', ['--bind', hostSide, path.join(tree, 'rootfs/dev/pts')]);
  execFileSync('mount', ['-t', 'tmpfs', 'shm', path.join(tree, 'rootfs/dev/shm')]);
  // Stacked: a second mount on the same point, as a retried mount would leave.
  execFileSync('mount', ['-t', 'tmpfs', 'proc-standin', path.join(tree, 'rootfs/proc')]);
  execFileSync('mount', ['-t', 'tmpfs', 'proc-standin', path.join(tree, 'rootfs/proc')]);
  writeFileSync(path.join(tree, 'rootfs/etc-file'), 'x');
  return { tree, hostSide };
}

maybe('a staging tree with mounts in it is unmounted, then removed; what the mounts exposed is untouched', async () => {
  const { tree, hostSide } = killedBuildTree('.staging-1-aaaa');
  // Deepest first, each point once (the stacked proc mounts share one).
  expect((await mountsUnder(tree)).map((p) => path.relative(tree, p))).toEqual(['rootfs/dev/shm', 'rootfs/dev/pts', 'rootfs/proc']);
  await removeScratchTree(tree);
  expect(existsSync(tree)).toBe(false);
  expect(await mountsUnder(tmp)).toEqual([]);
  expect(readFileSync(path.join(hostSide, 'ptmx'), 'utf8')).toBe("the host's, not the build's");
});

maybe('the next build sweeps staging trees of builds that are gone, and keeps live ones', async () => {
  const gone = killedBuildTree(`.staging-${deadPid()}-bbbb`);
  const live = path.join(tmp, 'layers', `.staging-${process.pid}-cccc`);
  mkdirSync(live, { recursive: true });
  const layer = path.join(tmp, 'layers', 'f'.repeat(64));
  mkdirSync(layer, { recursive: true });
  const swept = await sweepStaleStaging(path.join(tmp, 'layers'), '.staging-');
  expect(swept).toEqual([gone.tree]);
  expect(existsSync(gone.tree)).toBe(false);
  expect(existsSync(live)).toBe(true);
  expect(existsSync(layer)).toBe(true);
  expect(readFileSync(path.join(gone.hostSide, 'ptmx'), 'utf8')).toBe("the host's, not the build's");
});

test('mount points are read from mountinfo with its octal escapes, deepest first', async () => {
  const info = path.join(tmp, 'mountinfo');
  writeFileSync(
    info,
    [
      '22 1 0:21 / /proc rw - proc proc rw',
      `70 69 0:41 / ${tmp}/a\\040b/x rw - tmpfs none rw`,
      `71 69 0:42 / ${tmp}/a\\040b rw - tmpfs none rw`,
      `72 69 0:43 / ${tmp}/a\\040bc rw - tmpfs none rw`,
    ].join('\n'),
  );
  expect(await mountsUnder(path.join(tmp, 'a b'), info)).toEqual([`${tmp}/a b/x`, `${tmp}/a b`]);
});
