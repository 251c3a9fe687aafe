/**
 * bench/vsphere: the vsphere driver provisioning clones in vcsim (VMware's simulator, vCenter
 * mode unless --esx), through the real govc. A small OVA (a 64 MiB disk: vcsim keeps no disk
 * bytes, so the image size would not show anyway) is imported once; then, for each size, that
 * many nodes are created (a linked clone of the template snapshot + one reconfigure for the
 * identity, or with --esx a disk copy + a VM) and powered on, all at once through one driver
 * whose `concurrency` bounds the govc calls in flight, then destroyed. Prints figures; not a test.
 *
 *   bench/vsphere [--sizes 10,50] [--concurrency 4] [--esx] [--full] [--json]
 *
 * Per size: wall time until every node is created and powered on, the mean per node, the
 * marginal cost per node over the previous size (how the cost grows), p50/p99 of one node's
 * create+start, govc calls per node, and teardown time. vcsim answers in a few milliseconds, so
 * what is measured is mostly govc's own cost (a process and a login per call) and the driver's
 * call count: a real vCenter adds its task latencies (a linked clone takes seconds).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const args = process.argv.slice(2);
const flag = (name: string) => args.includes(name);
const option = (name: string, fallback: string) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] ? args[i + 1]! : fallback;
};
const sizes = option('--sizes', '10,50').split(',').map(Number);
const concurrency = Number(option('--concurrency', '4'));
const esx = flag('--esx');
const full = flag('--full');
process.env.KUBEDOS_LOG_LEVEL ??= 'warn';

// Imported after the environment is set: the logger reads its level from it.
const { ovfDescriptor } = require('../src/foundry/formats/ova') as typeof import('../src/foundry/formats/ova');
const { writeTar } = require('../src/foundry/tar') as typeof import('../src/foundry/tar');
const { generateIdentity } = require('../src/targets/identity') as typeof import('../src/targets/identity');
const { VsphereDriver } = require('../src/targets/vsphere/driver') as typeof import('../src/targets/vsphere/driver');
const { vsphere } = require('../src/targets/vsphere/index') as typeof import('../src/targets/vsphere/index');
const { recordingGovc, startVcsim, VCSIM_PASSWORD, VCSIM_USER } = require('../test/support/vcsim') as typeof import('../test/support/vcsim');

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const seconds = (ms: number) => Math.round(ms) / 1000;

async function smallOva(dir: string): Promise<{ path: string; sha256: string; size: number }> {
  const raw = path.join(dir, 'disk.raw');
  const vmdk = path.join(dir, 'bench-disk1.vmdk');
  execFileSync('qemu-img', ['create', '-q', '-f', 'raw', raw, '64M']);
  execFileSync('qemu-img', ['convert', '-q', '-O', 'vmdk', '-o', 'subformat=streamOptimized', raw, vmdk]);
  const image = { name: 'bench', role: 'worker', diskSizeBytes: 64 * 1024 * 1024 } as Parameters<typeof ovfDescriptor>[0];
  const ovf = path.join(dir, 'bench.ovf');
  writeFileSync(ovf, ovfDescriptor(image, 'bench-disk1.vmdk', statSync(vmdk).size));
  const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');
  const mf = path.join(dir, 'bench.mf');
  writeFileSync(mf, `SHA256(bench.ovf)= ${sha(ovf)}\nSHA256(bench-disk1.vmdk)= ${sha(vmdk)}\n`);
  const ova = path.join(dir, 'bench.ova');
  await writeTar(ova, [{ name: 'bench.ovf', file: ovf }, { name: 'bench.mf', file: mf }, { name: 'bench-disk1.vmdk', file: vmdk }], 1700000000);
  return { path: ova, sha256: sha(ova), size: statSync(ova).size };
}

interface Figures {
  nodes: number;
  wallS: number;
  perNodeS: number;
  marginalPerNodeS?: number;
  nodeP50S: number;
  nodeP99S: number;
  govcCallsPerNode: number;
  teardownS: number;
  loadavg: string;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kubedos-bench-vsphere-'));
  const sim = await startVcsim({ esx });
  try {
    process.env.KUBEDOS_BENCH_VSPHERE_USER = VCSIM_USER;
    process.env.KUBEDOS_BENCH_VSPHERE_PASSWORD = VCSIM_PASSWORD;
    const spec = vsphere.schema.parse({
      type: 'vsphere',
      url: sim.url,
      credentials: { username: { env: 'KUBEDOS_BENCH_VSPHERE_USER' }, password: { env: 'KUBEDOS_BENCH_VSPHERE_PASSWORD' } },
      tls: { thumbprint: sim.thumbprint },
      ...(esx ? {} : { datacenter: 'DC0', cluster: 'DC0_C0' }),
      datastore: 'LocalDS_0',
      clone: full ? 'full' : 'linked',
      concurrency,
    });
    const govc = recordingGovc(dir);
    const driver = new VsphereDriver('bench', spec as never, { stateDir: path.join(dir, 'state') }, { govc: govc.path });
    const ova = await smallOva(dir);
    let t = Date.now();
    const prepared = await driver.prepare({ name: 'bench', digest: 'b'.repeat(64), artifact: { format: 'ova', ...ova } }, {});
    process.stderr.write(`bench/vsphere: ${esx ? 'ESXi' : 'vCenter'} (vcsim), ${full ? 'full' : esx ? 'disk-copy' : 'linked'} clones, concurrency ${concurrency}; template imported in ${seconds(Date.now() - t)} s\n`);

    const figures: Figures[] = [];
    for (const [round, n] of sizes.entries()) {
      const callsBefore = govc.calls().length;
      const load = loadavg();
      const labels = { platform: 'bench', fleet: `n${n}`, generation: 1, image: 'bench', imageDigest: 'b'.repeat(64) };
      const ids = Array.from({ length: n }, (_, i) => `bench-r${round}-${String(i).padStart(4, '0')}`);
      const perNode: number[] = [];
      t = Date.now();
      await Promise.all(
        ids.map(async (nodeId, i) => {
          const started = Date.now();
          await driver.create({ nodeId, labels, image: prepared, identity: generateIdentity(`n${n}-${i}`), authorizedKeys: [] }, {});
          await driver.start(nodeId, {});
          perNode.push(Date.now() - started);
        }),
      );
      const wall = Date.now() - t;
      const calls = govc.calls().length - callsBefore;
      const listed = await driver.list({ platform: 'bench', fleet: `n${n}` }, {});
      if (listed.length !== n || !listed.every((x) => x.running)) throw new Error(`expected ${n} running nodes, list says ${listed.length}`);
      t = Date.now();
      await Promise.all(ids.map((nodeId) => driver.destroy(nodeId, {})));
      const teardown = Date.now() - t;
      const previous = figures.at(-1);
      figures.push({
        nodes: n,
        wallS: seconds(wall),
        perNodeS: seconds(wall / n),
        marginalPerNodeS: previous ? seconds((wall - previous.wallS * 1000) / (n - previous.nodes)) : undefined,
        nodeP50S: seconds(percentile(perNode, 50)),
        nodeP99S: seconds(percentile(perNode, 99)),
        govcCallsPerNode: Math.round((calls / n) * 10) / 10,
        teardownS: seconds(teardown),
        loadavg: load,
      });
    }

    if (flag('--json')) {
      process.stdout.write(`${JSON.stringify({ mode: esx ? 'esx' : full ? 'full' : 'linked', concurrency, figures }, null, 2)}\n`);
      return;
    }
    const rows = [
      ['nodes', 'wall s', 's/node', 'marginal s/node', 'node p50 s', 'node p99 s', 'govc calls/node', 'teardown s', 'loadavg'],
      ...figures.map((f) => [f.nodes, f.wallS, f.perNodeS, f.marginalPerNodeS ?? '-', f.nodeP50S, f.nodeP99S, f.govcCallsPerNode, f.teardownS, f.loadavg].map(String)),
    ];
    const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => String(r[c]).length)));
    for (const r of rows) process.stdout.write(`${r.map((cell, c) => String(cell).padStart(widths[c]!)).join('  ')}\n`);
  } finally {
    await sim.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`bench/vsphere: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
