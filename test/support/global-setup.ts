/**
 * Once per test run: start the real Temporal dev server (headless, SQLite in a temp dir, a free
 * port) and bundle the workflow code once. Tests read both from the environment.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnDaemon } from '../../src/exec/daemon';
import { devServerArgv, findTemporalBinary, waitForServer } from '../../src/temporal/dev-server';
import { bundleWorkflows } from '../../src/temporal/bundle-workflows';
import { freePort } from '../../src/exec/ports';
import { generateCodecKey } from '../../src/temporal/codec';


export default async function globalSetup(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kubedos-test-'));
  const port = await freePort();
  const bin = await findTemporalBinary();
  const argv = devServerArgv(bin, {
    ip: '127.0.0.1',
    port,
    uiPort: await freePort(),
    dbFile: path.join(dir, 'temporal.db'),
    namespace: 'default',
    headless: true,
  });
  const pid = spawnDaemon(argv, { logFile: path.join(dir, 'temporal.log'), detached: false });
  const address = `127.0.0.1:${port}`;
  const [bundle] = await Promise.all([
    bundleWorkflows(path.join(dir, 'workflow-bundle.js')),
    waitForServer(address, 'default', 60_000),
  ]);
  process.env.KUBEDOS_TEST_DIR = dir;
  // One payload key for the whole run, so test clients, test workers and every CLI and stack the
  // tests start (fresh KUBEDOS_HOMEs included) encrypt alike; a developer's own key never leaks in.
  delete process.env.KUBEDOS_CODEC_KEY_FILE;
  process.env.KUBEDOS_CODEC_KEY = generateCodecKey();
  // CI proves the cold path: built images and caches start empty there (and go with the run);
  // on a developer's machine they persist between runs under <tmpdir>/kubedos-test-images.
  if (process.env.CI && !process.env.KUBEDOS_TEST_IMAGES) process.env.KUBEDOS_TEST_IMAGES = path.join(dir, 'images');
  process.env.KUBEDOS_TEST_TEMPORAL_ADDRESS = address;
  process.env.KUBEDOS_TEST_WORKFLOW_BUNDLE = bundle;
  process.env.KUBEDOS_TEST_TEMPORAL_PID = String(pid);
  writeFileSync(path.join(dir, 'server.json'), JSON.stringify({ pid, address }));
}
