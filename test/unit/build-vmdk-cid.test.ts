/**
 * qemu-img prints the vmdk CID without zero padding, so its length varies with the random value,
 * and it rewrites the descriptor in place, so a shorter CID leaves stale bytes behind the NUL.
 * fixVmdkCid must give the same bytes whatever CID qemu-img chose, short ones included.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fixVmdkCid } from '../../src/foundry/formats/vmdk';

const dir = mkdtempSync(path.join(os.tmpdir(), 'kubedos-vmdk-'));
const raw = path.join(dir, 'disk.raw');
const data = Buffer.alloc(4 * 2 ** 20);
data.write('kubedos', 2 ** 20);
writeFileSync(raw, data);

/** A fresh streamOptimized vmdk whose CID is then rewritten to `cid` the way qemu-img does it. */
function vmdkWithCid(name: string, cid: string): string {
  // Same file name everywhere: the descriptor's extent line names the file.
  const out = path.join(mkdtempSync(path.join(dir, `${name}-`)), 'disk.vmdk');
  const r = spawnSync('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', raw, out], { encoding: 'utf8' });
  expect(r.status).toBe(0);
  const bytes = readFileSync(out);
  const start = bytes.indexOf('# Disk DescriptorFile');
  const end = bytes.indexOf(0, start);
  const text = bytes.subarray(start, end).toString('latin1').replace(/\nCID=[0-9a-f]+\n/, `\nCID=${cid}\n`);
  // Like qemu-img's in-place update: the new text and its NUL, old bytes left after them.
  Buffer.from(`${text}\0`, 'latin1').copy(bytes, start);
  writeFileSync(out, bytes);
  return out;
}

const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');

test('the CID is normalised to a content-derived 8-digit value whatever qemu-img wrote', async () => {
  const files = [vmdkWithCid('a', 'deadbeef'), vmdkWithCid('b', '3'), vmdkWithCid('c', 'abc1234')];
  const cids = [];
  for (const f of files) cids.push(await fixVmdkCid(f));
  expect(new Set(cids).size).toBe(1);
  expect(cids[0]).toMatch(/^[0-9a-f]{8}$/);
  expect(new Set(files.map(sha)).size).toBe(1);
  expect(readFileSync(files[1]!).toString('latin1')).toContain(`\nCID=${cids[0]}\n`);
  const check = spawnSync('qemu-img', ['check', files[1]!], { encoding: 'utf8' });
  expect(check.status).toBe(0);
  // Idempotent: fixing an already fixed file changes nothing.
  const before = sha(files[0]!);
  await fixVmdkCid(files[0]!);
  expect(sha(files[0]!)).toBe(before);
});
