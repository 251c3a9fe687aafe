/**
 * A scratch root filesystem for running the image's metadata readers on the host (KUBEDOS_ROOT):
 * the files they read and write, as a freshly booted image has them, plus the image's
 * /usr/lib/kubedos layout (nocloud.awk, metadata.d/10-nocloud) beside it in `lib`.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { NOCLOUD_AWK, NOCLOUD_READER } from '../../src/foundry/nocloud-reader';

export const SCRATCH_HOSTNAME = 'kubedos-test-0';

export async function scratchRoot(dir: string): Promise<{ root: string; lib: string }> {
  const root = path.join(dir, 'root');
  for (const d of ['etc/ssh/sshd_config.d', 'proc/sys/kernel', 'root/.ssh', 'var/lib', 'run']) await fs.mkdir(path.join(root, d), { recursive: true });
  await fs.writeFile(path.join(root, 'etc/hostname'), `${SCRATCH_HOSTNAME}\n`);
  await fs.writeFile(path.join(root, 'etc/hosts'), `127.0.0.1\tlocalhost\n127.0.1.1\t${SCRATCH_HOSTNAME}\n::1\tlocalhost\n`);
  await fs.writeFile(path.join(root, 'etc/machine-id'), '');
  await fs.writeFile(path.join(root, 'proc/sys/kernel/hostname'), SCRATCH_HOSTNAME);
  const lib = path.join(dir, 'lib');
  await fs.mkdir(path.join(lib, 'metadata.d'), { recursive: true });
  await fs.writeFile(path.join(lib, 'nocloud.awk'), NOCLOUD_AWK);
  await fs.writeFile(path.join(lib, 'metadata.d', '10-nocloud'), NOCLOUD_READER, { mode: 0o755 });
  return { root, lib };
}
