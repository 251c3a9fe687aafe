/**
 * Prints what the image's cloud readers cost at first boot under TCG: the shared test image's
 * azure VHD and gce disk.raw booted under QEMU the way each cloud presents itself, with the
 * WireServer and metadata server stand-ins (test/support/cloud-boot.ts, as in
 * test/e2e/cloud-firstboot.test.ts). Per boot: wall ms from QEMU's start to each first-boot mark,
 * and the derived costs — the Azure reader's identity part (its hook to the next hook), the
 * "provisioning complete" report (once the network is up, off the first-boot path), the GCE
 * reader (its hook to the host keys: networkd + DHCP + three metadata requests + the NoCloud
 * rules), and what each reader costs on the other platform (the DMI check). The machine's load
 * average is printed with each run: on a shared builder it dominates.
 *   npx ts-node --transpile-only bench/cloud-firstboot.ts [N=1]
 */
import os from 'node:os';
import { generateIdentity } from '../src/targets/identity';
import { bootAzure, bootGce } from '../test/support/cloud-boot';
import { builtImage } from '../test/support/images';

const load = () => os.loadavg().map((l) => l.toFixed(2)).join(' ');
const d = (m: Record<string, number>, a: string, b: string) => (m[a] !== undefined && m[b] !== undefined ? m[b]! - m[a]! : NaN);

async function main(): Promise<void> {
  const runs = Number(process.argv[2] ?? 1);
  const img = await builtImage();
  const keys = ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBx2k1yq5cXzRk0m9YV0l3cJvY8QdYgZ0m2l9ZsV1c3d bench'];
  for (let i = 1; i <= runs; i++) {
    const before = load();
    const az = await bootAzure(img, { nodeId: `bench-az-${i}`, identity: generateIdentity(`bench-az-${i}`), authorizedKeys: keys });
    console.log(`azure boot ${i} (load ${before} → ${load()}): ${az.complete ? 'complete' : 'INCOMPLETE'}`, az.marks);
    console.log(`  azure reader, identity (30-azure → 40-gce): ${d(az.marks, 'azureHook', 'gceHook')} ms; ready reported ${d(az.marks, 'firstbootDone', 'reported')} ms after first boot finished, ${d(az.marks, 'azureHook', 'reported')} ms after the reader started; gce reader off its platform (40-gce → host keys): ${d(az.marks, 'gceHook', 'hostkeys')} ms; QEMU start → ready ${az.marks.ready} ms`);
    const before2 = load();
    const gce = await bootGce(img, { nodeId: `bench-gce-${i}`, identity: generateIdentity(`bench-gce-${i}`), authorizedKeys: keys, instanceId: String(7000000000000000000n + BigInt(i)) });
    console.log(`gce boot ${i} (load ${before2} → ${load()}): ${gce.complete ? 'complete' : 'INCOMPLETE'}`, gce.marks);
    console.log(`  gce reader (40-gce → host keys): ${d(gce.marks, 'gceHook', 'hostkeys')} ms; azure reader off its platform (30-azure → 40-gce): ${d(gce.marks, 'azureHook', 'gceHook')} ms; QEMU start → ready ${gce.marks.ready} ms`);
    if (!az.complete || !gce.complete) process.exitCode = 1;
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
