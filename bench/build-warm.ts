/**
 * Prints the cost of a payload-only rebuild (raw + qcow2) against the shared test caches:
 * builds the test image once if needed (cold), then rebuilds N times with a changed file.
 * The machine's load average is printed with each run: on a shared builder it dominates.
 *   npx ts-node --transpile-only bench/build-warm.ts [N=3]
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildImage } from '../src/foundry';
import { builtImage, sharedCaches, TEST_PLAN } from '../test/support/images';

function load(): string {
  return os.loadavg().map((l) => l.toFixed(2)).join(' ');
}

async function main(): Promise<void> {
  const runs = Number(process.argv[2] ?? 3);
  const img = await builtImage();
  if (img.result) console.log(`cold build: ${img.result.totalMs} ms`, img.result.timings);
  const totals: number[] = [];
  for (let i = 0; i < runs; i++) {
    const outputDir = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-bench-'));
    try {
      const plan = { ...TEST_PLAN, formats: ['raw', 'qcow2'] as ('raw' | 'qcow2')[], image: { ...TEST_PLAN.image, files: [{ path: '/etc/kubedos/bench', content: `${i} ${Date.now()}\n`, mode: 0o644, owner: 'root:root' }] } };
      const before = load();
      const r = await buildImage(plan, { ...sharedCaches(), outputDir, lock: img.lock });
      totals.push(r.totalMs);
      console.log(`warm payload-only rebuild ${i + 1}: ${r.totalMs} ms (mmdebstrap ran: ${r.ranMmdebstrap}; load before ${before}, after ${load()})`, r.timings);
    } finally {
      await fs.rm(outputDir, { recursive: true, force: true });
    }
  }
  const sorted = [...totals].sort((a, b) => a - b);
  if (sorted.length > 0) console.log(`warm rebuild: min ${sorted[0]} ms, median ${sorted[Math.floor(sorted.length / 2)]} ms over ${sorted.length} runs`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
