/**
 * Workers on separate hosts. Three "machines" — control, build (the Foundry) and kvm — each a
 * network namespace on the cluster's bridge with a KUBEDOS_HOME of its own, running its pool's
 * worker process (`node dist/workers/<pool>.js`), sharing only the production-shaped Temporal
 * frontend (test/support/temporal-cluster.ts) and an S3 store (versitygw) on that bridge. The
 * operator's CLI is a fourth home, in the root namespace. Each host gets its settings the
 * documented way (README, "Running against a production Temporal cluster"):
 *
 * - Temporal: TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE; the namespace is made the way auto-setup
 *   makes it (`temporal operator namespace create`), and the workers register KubeDos's search
 *   attributes themselves on start (the compose stack's bootstrap).
 * - Payload codec: the same key installed as $KUBEDOS_HOME/keys/codec.key on every host.
 * - Store: KUBEDOS_S3_BUCKET / _ENDPOINT and the AWS_* credentials on the build and kvm hosts and
 *   the CLI (the control host needs none: hollow nodes and workflows only).
 * - Trust: `kubedos store key` on the build host prints the Foundry's allowed_signers line, which
 *   is installed as $KUBEDOS_HOME/keys/allowed_signers on the kvm host.
 *
 * `kubedos deploy` then builds the image on the build host (a payload-only build over the shared
 * test image's cached layer, see images.ts), publishes and signs it into S3, and the kvm host
 * fetches it by digest, verifies signature and digest, and boots a real QEMU node (TCG) that
 * reaches readiness.
 */
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { canonicalJson, sha256Hex, type BuildPlan } from '../../src/foundry';
import { lockInputsDigest, parseLock } from '../../src/foundry/lock';
import { planFromSpec } from '../../src/foundry/from-spec';
import { loadSpec } from '../../src/platform';
import { DEFAULT_BASE_PACKAGES } from '../../src/platform/catalog';
import { logTail, spawnDaemon, stopProcess } from '../../src/exec/daemon';
import { parsePublication } from '../../src/store/publish';
import { blobKey } from '../../src/store/s3';
import { signatureRefOf } from '../../src/store/store';
import { generateCodecKey } from '../../src/temporal/codec';
import type { FleetStatus } from '../../workflows/fleet-api';
import { ROOT, TEMPORAL, cliEnv, kubedos } from '../support/cli';
import { builtImage, sharedCaches, testImagesRoot, TEST_PLAN } from '../support/images';
import { createHost, deleteHost, netnsOf, type TestHost } from '../support/netns-hosts';
import { startS3Server, type S3TestServer } from '../support/s3-server';
import { sharedCluster, type ClusterInfo } from '../support/temporal-cluster';

jest.setTimeout(60 * 60_000);

/** The shared test image's plan, qcow2 only: the same base, so the same cached rootfs layer and .debs. */
const QEMU_PLAN: BuildPlan = { ...TEST_PLAN, formats: ['qcow2'] };
const id = randomUUID().slice(0, 6);
const platform = `h${id}`;
const namespace = `kubedos-hosts-${id}`;
const POOLS = ['control', 'build', 'kvm'] as const;
type Pool = (typeof POOLS)[number];

let cluster: ClusterInfo;
let s3: S3TestServer;
let base: string;
let cliHome: string;
let specDir: string;
const hosts = {} as Record<Pool, TestHost>;
const workers = {} as Record<Pool, { pid: number; log: string }>;

/** The shared test image's packages beyond the defaults every image gets: the spec names them to describe that base. */
const sharedImageExtraPackages = () => QEMU_PLAN.base.packages.filter((p) => !(DEFAULT_BASE_PACKAGES as readonly string[]).includes(p));

const spec = () => `apiVersion: kubedos.dev/v1alpha1
kind: Platform
metadata:
  name: ${platform}
base:
  suite: bookworm
  mirror: http://deb.debian.org/debian
  sourceDateEpoch: ${QEMU_PLAN.sourceDateEpoch}
  packages: [${sharedImageExtraPackages().join(', ')}]
images:
  worker:
    files:
      - path: /etc/kubedos/greeting
        content: "built on the build host, booted on the kvm host\\n"
    outputs: [qcow2]
targets:
  vm:
    type: qemu
    accel: auto
    memory: 1GiB
    cpus: 2
fleets:
  nodes:
    image: worker
    target: vm
    replicas: 1
    healthCheck: { type: readiness, interval: 2s, timeout: 20m, retries: 0 }
`;

function s3Env(): Record<string, string> {
  return {
    KUBEDOS_S3_BUCKET: s3.bucket,
    KUBEDOS_S3_ENDPOINT: s3.endpoint,
    KUBEDOS_S3_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: s3.config.credentials!.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s3.config.credentials!.secretAccessKey,
  };
}

/** What a host's environment holds: nothing of the test process but PATH (no codec key, no store). */
function hostEnv(home: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    PATH: `${path.join(ROOT, '.tools', 'bin')}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}`,
    HOME: home,
    KUBEDOS_HOME: home,
    TEMPORAL_ADDRESS: cluster.address,
    TEMPORAL_NAMESPACE: namespace,
    KUBEDOS_LOG_LEVEL: 'info',
    ...extra,
  };
}

/** The CLI of the operator's machine: its own home, the store settings, the codec key file. */
const cli = () => cliEnv({ ...hostEnv(cliHome, s3Env()), KUBEDOS_CODEC_KEY: undefined, KUBEDOS_CODEC_KEY_FILE: undefined, KUBEDOS_TEST_IMAGES: undefined });

function installCodecKey(home: string, key: string): void {
  mkdirSync(path.join(home, 'keys'), { recursive: true, mode: 0o700 });
  writeFileSync(path.join(home, 'keys', 'codec.key'), `${key}\n`, { mode: 0o600 });
}

/** Live QEMU processes whose command line mentions `marker`. */
function qemuPids(marker: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      if (!argv[0]?.endsWith('qemu-system-x86_64') || !argv.some((a) => a.includes(marker))) continue;
      if (/\) Z /.test(readFileSync(`/proc/${name}/stat`, 'utf8'))) continue;
      pids.push(Number(name));
    } catch {
      /* gone meanwhile */
    }
  }
  return pids;
}

function customAttributes(): Record<string, string> {
  const r = spawnSync(TEMPORAL, ['operator', 'search-attribute', 'list', '--address', cluster.address, '--namespace', namespace, '--output', 'json'], { encoding: 'utf8' });
  if (r.status !== 0) return {};
  const parsed = JSON.parse(r.stdout) as { customAttributes?: Record<string, string> } | Array<{ name: string; type: string }>;
  const raw = Array.isArray(parsed) ? Object.fromEntries(parsed.map((a) => [a.name, a.type])) : (parsed.customAttributes ?? {});
  return Object.fromEntries(Object.entries(raw).filter(([k]) => k.startsWith('Kubedos')).map(([k, v]) => [k, String(v).replace(/^INDEXED_VALUE_TYPE_/, '').toLowerCase()]));
}

beforeAll(async () => {
  // The shared test image first: its build fills the layer and .deb caches the build host reuses.
  [cluster] = await Promise.all([sharedCluster(), builtImage(QEMU_PLAN)]);
  if (!cluster.bridge) throw new Error('the cluster has no bridge: the separate-hosts test needs root to make network namespaces');
  s3 = await startS3Server(`kubedos-hosts-${id}`, { host: cluster.host });
  base = mkdtempSync(path.join(os.tmpdir(), 'kubedos-hosts-'));

  // The namespace, as auto-setup makes it; nothing registers the search attributes but the workers.
  const created = spawnSync(TEMPORAL, ['operator', 'namespace', 'create', '--address', cluster.address, '--namespace', namespace], { encoding: 'utf8' });
  if (created.status !== 0) throw new Error(`namespace create: ${created.stderr}`);

  const key = generateCodecKey();
  cliHome = path.join(base, 'operator');
  for (const [i, pool] of POOLS.entries()) {
    hosts[pool] = await createHost(cluster.bridge, pool, i + 1, path.join(base, pool));
    installCodecKey(hosts[pool].home, key);
  }
  installCodecKey(cliHome, key);
  // The build host's caches are the test run's shared ones (a machine that has built this base before).
  mkdirSync(path.join(hosts.build.home, 'cache'), { recursive: true });
  symlinkSync(sharedCaches().cacheDir, path.join(hosts.build.home, 'cache', 'build'));
  symlinkSync(sharedCaches().debCacheDir, path.join(hosts.build.home, 'cache', 'debs'));

  // Trust: the Foundry's allowed_signers line, printed on the build host, installed on the kvm host.
  const line = await kubedos(['store', 'key'], cliEnv({ ...hostEnv(hosts.build.home), KUBEDOS_CODEC_KEY: undefined }));
  if (line.code !== 0) throw new Error(`store key: ${line.stderr}`);
  writeFileSync(path.join(hosts.kvm.home, 'keys', 'allowed_signers'), line.stdout);
  chmodSync(path.join(hosts.kvm.home, 'keys', 'allowed_signers'), 0o644);

  // The spec, locked to the shared image's package set (the build host resolves nothing).
  specDir = path.join(cliHome, 'spec');
  mkdirSync(specDir, { recursive: true });
  writeFileSync(path.join(specDir, 'kubedos.yaml'), spec());
  const baseLock = parseLock(readFileSync(path.join(testImagesRoot(), `base-${sha256Hex(canonicalJson(QEMU_PLAN.base)).slice(0, 16)}.lock`), 'utf8'));
  const plan = planFromSpec(await loadSpec(path.join(specDir, 'kubedos.yaml')), 'worker', { sourceDateEpoch: QEMU_PLAN.sourceDateEpoch });
  // The spec must describe the shared image's base exactly, or the build host would need the mirror.
  expect(lockInputsDigest(plan.base)).toBe(baseLock.baseInputs);
  writeFileSync(path.join(specDir, 'kubedos.lock'), `${JSON.stringify({ lockVersion: 1, sourceDateEpoch: QEMU_PLAN.sourceDateEpoch, images: { worker: baseLock } }, null, 2)}\n`);

  for (const pool of POOLS) {
    const host = hosts[pool];
    const log = path.join(host.home, 'logs', `worker-${pool}.log`);
    const env = hostEnv(host.home, pool === 'control' ? {} : s3Env());
    const pid = spawnDaemon(host.exec([process.execPath, path.join(ROOT, 'dist', 'workers', `${pool}.js`)]), { logFile: log, detached: false, env });
    workers[pool] = { pid, log };
  }
});

afterAll(async () => {
  if (specDir) await kubedos(['down', path.join(specDir, 'kubedos.yaml')], cli(), 180_000).catch(() => undefined);
  for (const pool of POOLS) if (workers[pool]) await stopProcess(workers[pool].pid, `workers/${pool}.js`, 30_000);
  // Whatever happened above: no VM outlives the test.
  for (const pid of base ? qemuPids(base) : []) process.kill(pid, 'SIGKILL');
  for (const pool of POOLS) if (hosts[pool]) await deleteHost(hosts[pool]);
  await s3?.stop();
  if (base) rmSync(base, { recursive: true, force: true });
});

const workerLogs = () => POOLS.map((p) => `--- ${p}\n${workers[p] ? logTail(workers[p].log, 12) : ''}`).join('\n');

test('each pool runs in its own network namespace; the workers bootstrap the namespace\'s search attributes', async () => {
  // `ip netns exec` enters the namespace a moment after it is spawned: ask until it has (or 10 s).
  const namespaceOf = async (pool: Pool) => {
    let ns = '';
    for (const deadline = Date.now() + 10_000; Date.now() < deadline && ns !== hosts[pool].netns; await sleep(200)) ns = await netnsOf(workers[pool].pid);
    return ns;
  };
  for (const pool of POOLS) expect(await namespaceOf(pool)).toBe(hosts[pool].netns);
  let attributes: Record<string, string> = {};
  for (const deadline = Date.now() + 120_000; Date.now() < deadline; await sleep(500)) {
    attributes = customAttributes();
    if (Object.keys(attributes).length === 4) break;
  }
  expect({ attributes, logs: Object.keys(attributes).length === 4 ? '' : workerLogs() }).toEqual({
    attributes: { KubedosFleet: 'keyword', KubedosImage: 'keyword', KubedosTarget: 'keyword', KubedosPhase: 'keyword' },
    logs: '',
  });
  // Each host cached its verdict in its own home.
  for (const pool of POOLS) {
    for (let i = 0; i < 60 && !existsSync(path.join(hosts[pool].home, 'cluster')); i++) await sleep(500);
    expect(readdirSync(path.join(hosts[pool].home, 'cluster'))).toHaveLength(1);
  }
});

test('deploy: built on the build host, fetched by digest and verified on the kvm host, a QEMU node ready there', async () => {
  const started = Date.now();
  const r = await kubedos(['deploy', path.join(specDir, 'kubedos.yaml'), '--json'], cli(), 50 * 60_000);
  expect({ code: r.code, stderr: r.code === 0 ? '' : `${r.stderr}\n${workerLogs()}` }).toEqual({ code: 0, stderr: '' });
  const fleet = (JSON.parse(r.stdout) as { fleets: (FleetStatus & { outcome: string })[] }).fleets[0]!;
  expect(fleet).toMatchObject({ outcome: 'ok', phase: 'steady', generation: 1 });
  const node = fleet.nodes.find((n) => n.state === 'ready')!;
  expect(node).toBeDefined();
  const digest = fleet.desired.image.digest;
  console.log(`separate hosts: deploy (build on the build host, publish to S3, fetch + verify + boot on the kvm host under TCG) in ${Date.now() - started} ms; node ready after ${node.readyMs} ms (load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')})`);

  // The publication is in the shared store: manifest, its signature, the qcow2 blob.
  const store = s3.store();
  try {
    const manifest = parsePublication(await store.getBytes(digest))!;
    expect(manifest.image.name).toBe('worker');
    const qcow2 = manifest.artifacts.find((a) => a.format === 'qcow2')!;
    expect(existsSync(s3.objectFile(blobKey(qcow2.sha256)))).toBe(true);
    const sigDigest = await store.getRef(signatureRefOf(digest));
    expect(sigDigest).toMatch(/^[0-9a-f]{64}$/);
    // The signature verifies with stock OpenSSH against exactly what the kvm host trusts.
    const sigFile = path.join(base, 'manifest.sig');
    writeFileSync(sigFile, await store.getBytes(sigDigest!));
    const verify = spawnSync('ssh-keygen', ['-Y', 'verify', '-f', path.join(hosts.kvm.home, 'keys', 'allowed_signers'), '-I', 'kubedos-foundry', '-n', 'kubedos-manifest', '-s', sigFile], { input: await store.getBytes(digest) });
    expect(verify.status).toBe(0);

    // Built on the build host: staged in its own local store, signed with its own key.
    expect(existsSync(path.join(hosts.build.home, 'keys', 'foundry_ed25519'))).toBe(true);
    const staged = spawnSync('find', [path.join(hosts.build.home, 'store'), '-name', qcow2.sha256], { encoding: 'utf8' }).stdout.trim();
    expect(staged).not.toBe('');
    // Fetched by digest on the kvm host and verified there; it trusts the Foundry only through allowed_signers.
    const fetched = readdirSync(path.join(hosts.kvm.home, 'artifacts'));
    expect(fetched).toEqual([expect.stringMatching(new RegExp(`^${qcow2.sha256.slice(0, 16)}-`))]);
    const sum = spawnSync('sha256sum', [path.join(hosts.kvm.home, 'artifacts', fetched[0]!)], { encoding: 'utf8' }).stdout.split(' ')[0];
    expect(sum).toBe(qcow2.sha256);
    expect(existsSync(path.join(hosts.kvm.home, 'keys', 'foundry_ed25519'))).toBe(false);
    // Nothing of the image on the control host or the operator's machine.
    for (const home of [hosts.control.home, cliHome]) expect(existsSync(path.join(home, 'artifacts'))).toBe(false);
  } finally {
    store.destroy();
  }

  // The VM runs on the kvm host, inside its network namespace, and booted to readiness there.
  const nodeDir = path.join(hosts.kvm.home, 'targets', 'vm', 'nodes', node.nodeId);
  const qemu = Number(readFileSync(path.join(nodeDir, 'qemu.pid'), 'utf8'));
  expect(qemuPids(hosts.kvm.home)).toEqual([qemu]);
  expect(await netnsOf(qemu)).toBe(hosts.kvm.netns);
  const consoleLog = readFileSync(path.join(nodeDir, 'console.log'), 'utf8');
  expect(consoleLog).toContain(`kubedos: nocloud: machine-id ${node.identity!.machineId}`);

  const down = await kubedos(['down', path.join(specDir, 'kubedos.yaml')], cli(), 180_000);
  expect(down.stdout).toMatch(new RegExp(`${platform}/nodes: destroyed 1 node\\(s\\)`));
  expect(qemuPids(hosts.kvm.home)).toEqual([]);
});
