/**
 * Run one of the image's metadata readers (a metadata.d hook) for real with bash on a scratch root
 * (test/support/scratch-root.ts), with a fake DMI directory, and return what it applied: the
 * hostname, SSH host key and machine-id it wrote. For tests that feed a reader what a cloud
 * stand-in would hand the guest.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { scratchRoot } from './scratch-root';

export interface ReaderRun {
  status: number | null;
  stdout: string;
  stderr: string;
  root: string;
  /** What the reader wrote (undefined when it did not). */
  hostname?: string;
  hostKeyPrivate?: string;
  hostKeyPublic?: string;
  machineId?: string;
}

export async function runReader(o: {
  dir: string;
  /** File name in metadata.d, e.g. 30-azure. */
  name: string;
  script: string;
  dmi: Record<string, string>;
  env?: Record<string, string>;
  /** Files to put in a directory named by `env` (e.g. the provisioning media for KUBEDOS_AZURE_OVF_DIR). */
  files?: { envVar: string; files: Record<string, string> };
}): Promise<ReaderRun> {
  const dir = mkdtempSync(path.join(o.dir, 'reader-'));
  const { root, lib } = await scratchRoot(dir);
  const reader = path.join(lib, 'metadata.d', o.name);
  await fs.writeFile(reader, o.script, { mode: 0o755 });
  const dmi = path.join(dir, 'dmi');
  mkdirSync(dmi);
  for (const [k, v] of Object.entries(o.dmi)) await fs.writeFile(path.join(dmi, k), `${v}\n`);
  const env: Record<string, string> = { ...o.env };
  if (o.files) {
    const d = path.join(dir, 'files');
    mkdirSync(d);
    for (const [k, v] of Object.entries(o.files.files)) await fs.writeFile(path.join(d, k), v);
    env[o.files.envVar] = d;
  }
  const bin = path.join(dir, 'bin');
  mkdirSync(bin);
  // The image's awk is mawk.
  execFileSync('ln', ['-s', execFileSync('sh', ['-c', 'command -v mawk'], { encoding: 'utf8' }).trim(), path.join(bin, 'awk')]);
  const r = await new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn('bash', [reader], { env: { PATH: `${bin}:/usr/sbin:/usr/bin:/sbin:/bin`, KUBEDOS_ROOT: root, KUBEDOS_DMI_DIR: dmi, TMPDIR: path.join(root, 'run'), ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
  const read = (p: string) => {
    try {
      return readFileSync(path.join(root, p), 'utf8');
    } catch {
      return undefined;
    }
  };
  return {
    ...r,
    root,
    hostname: read('etc/hostname')?.trim(),
    hostKeyPrivate: read('etc/ssh/ssh_host_ed25519_key'),
    hostKeyPublic: read('etc/ssh/ssh_host_ed25519_key.pub')?.trim(),
    machineId: read('etc/machine-id')?.trim(),
  };
}
