/**
 * The hollow target (kubemark-style): each node is a tiny local process (kubedos-hollow-node, Go,
 * a few MiB of RSS) that "boots" for the target's bootDelay and then answers readiness with the
 * identity the Foundry gave it. No VM, no image bytes: it exists so the control plane — workflows,
 * batching, rollouts, rollbacks — can be exercised at fleet scale. Scale testing only.
 *
 * State per node under <stateDir>/nodes/<nodeId>/: labels.json, identity.json (public part),
 * host_key (0600, as a real node's disk would hold it), pid, addr, console.log. The processes are
 * detached, so they outlive a worker restart and are found again through these files.
 */
import { existsSync } from 'node:fs';
import { promises as fs } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { projectRoot } from '../../config/paths';
import { NodeAddressUnknownError, NodeImageConflictError, TargetNodeNotFoundError, ToolMissingError } from '../../errors';
import { isOurProcess, processesMatching, spawnDaemon, stopProcess } from '../../exec/daemon';
import type { HollowTargetSpec } from './index';
import type { CreateNodeRequest, DriverEnvironment, NodeAddress, NodeLabels, OwnedNode, TargetDriver } from '../driver';
import { checkNodeId } from '../driver-support';
import { publicPart, type PublicIdentity } from '../identity';

const BINARY = 'kubedos-hollow-node';

function hollowBinary(): string {
  for (const dir of [path.join(projectRoot(), '.tools', 'bin'), ...(process.env.PATH ?? '').split(':')]) {
    const candidate = path.join(dir, BINARY);
    if (dir && existsSync(candidate)) return candidate;
  }
  throw new ToolMissingError(BINARY, 'run scripts/setup (it builds kubedos-hollow-node from tools/hollow-node with Go)');
}

/** Write a small state file through a temporary name so readers never see half of it. */
async function writeAtomically(file: string, data: string, mode = 0o644): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  await fs.writeFile(tmp, data, { mode });
  await fs.rename(tmp, file);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function readJson<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8')) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function getJson(url: string, timeoutMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: timeoutMs, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

export class HollowDriver implements TargetDriver {
  readonly type = 'hollow' as const;

  constructor(
    readonly name: string,
    private readonly spec: HollowTargetSpec,
    private readonly env: DriverEnvironment,
  ) {}

  private nodeDir(nodeId: string): string {
    checkNodeId(nodeId);
    return path.join(this.env.stateDir, 'nodes', nodeId);
  }

  /** Marker on the node's command line: its own directory, unique per node. */
  private marker(nodeId: string): string {
    return this.nodeDir(nodeId);
  }

  /** The node's running processes, found by their `-dir` argument (recorded or not). */
  private processesOf(nodeId: string): number[] {
    const dir = this.nodeDir(nodeId);
    return processesMatching((argv) => argv.some((arg, i) => arg === dir && argv[i - 1] === '-dir') && path.basename(argv[0] ?? '') === BINARY);
  }

  /** What an attempt killed mid-write left: `<file>.tmp-<pid>` of a process that is gone. */
  private async removeStaleTemporaries(dir: string): Promise<void> {
    for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
      const m = /\.tmp-(\d+)$/.exec(name);
      if (m && !processAlive(Number(m[1]))) await fs.rm(path.join(dir, name), { force: true });
    }
  }

  async prepare(image: { digest: string }) {
    // Nothing to copy: a hollow node simulates its image.
    return { digest: image.digest, location: `hollow:${image.digest}` };
  }

  async create(request: CreateNodeRequest): Promise<PublicIdentity> {
    const dir = this.nodeDir(request.nodeId);
    const existing = await readJson<NodeLabels>(path.join(dir, 'labels.json'));
    if (existing && existing.imageDigest === request.labels.imageDigest) {
      const { nodeId: _id, imageDigest: _d, ...identity } = (await readJson<PublicIdentity & { nodeId: string; imageDigest: string }>(path.join(dir, 'identity.json')))!;
      return identity;
    }
    if (existing) throw new NodeImageConflictError(this.name, request.nodeId, existing.imageDigest);
    await fs.mkdir(dir, { recursive: true });
    const identity = { nodeId: request.nodeId, ...publicPart(request.identity), imageDigest: request.labels.imageDigest };
    await writeAtomically(path.join(dir, 'host_key'), request.identity.hostKeyPrivate, 0o600);
    await writeAtomically(path.join(dir, 'authorized_keys'), request.authorizedKeys.map((k) => `${k}\n`).join(''));
    await writeAtomically(path.join(dir, 'identity.json'), JSON.stringify(identity));
    // labels.json last: its presence means the node was completely created.
    await writeAtomically(path.join(dir, 'labels.json'), JSON.stringify(request.labels));
    return publicPart(request.identity);
  }

  async start(nodeId: string): Promise<void> {
    const dir = this.nodeDir(nodeId);
    const labels = await readJson<NodeLabels>(path.join(dir, 'labels.json'));
    if (!labels) throw new TargetNodeNotFoundError(this.name, nodeId, 'start');
    const pid = Number(await fs.readFile(path.join(dir, 'pid'), 'utf8').catch(() => '0'));
    if (pid > 0 && isOurProcess(pid, this.marker(nodeId))) return;
    await this.removeStaleTemporaries(dir);
    // An attempt killed between spawning the node and recording its pid: adopt that process.
    const [running, ...extra] = this.processesOf(nodeId);
    if (running) {
      for (const p of extra) await stopProcess(p, this.marker(nodeId), 5_000);
      await writeAtomically(path.join(dir, 'pid'), String(running));
      return;
    }
    await fs.rm(path.join(dir, 'addr'), { force: true });
    const argv = [hollowBinary(), '-dir', dir, '-boot-delay', `${this.spec.bootDelay}ms`];
    if (this.spec.unhealthyImages.includes(labels.image)) argv.push('-unhealthy');
    const child = spawnDaemon(argv, { logFile: path.join(dir, 'stderr.log'), detached: true, env: { PATH: process.env.PATH ?? '' } });
    await writeAtomically(path.join(dir, 'pid'), String(child));
  }

  async address(nodeId: string): Promise<NodeAddress> {
    const addr = await fs.readFile(path.join(this.nodeDir(nodeId), 'addr'), 'utf8').catch(() => '');
    const m = /^(.+):(\d+)$/.exec(addr.trim());
    if (!m) throw new NodeAddressUnknownError(this.name, nodeId, 'it has not been started, or is still starting');
    const port = Number(m[2]);
    // The hollow node answers every guest port on its one listener.
    return { host: m[1]!, ports: new Proxy({}, { get: () => port, has: () => true }) as Record<number, number> };
  }

  async readiness(nodeId: string): Promise<boolean> {
    const addr = await fs.readFile(path.join(this.nodeDir(nodeId), 'addr'), 'utf8').catch(() => '');
    if (!addr) return false;
    try {
      const res = await getJson(`http://${addr.trim()}/ready`, 2_000);
      return res.status === 200;
    } catch {
      return false;
    }
  }

  async destroy(nodeId: string): Promise<void> {
    const dir = this.nodeDir(nodeId);
    const pid = Number(await fs.readFile(path.join(dir, 'pid'), 'utf8').catch(() => '0'));
    const pids = new Set([...(pid > 0 ? [pid] : []), ...this.processesOf(nodeId)]);
    for (const p of pids) await stopProcess(p, this.marker(nodeId), 5_000);
    await fs.rm(dir, { recursive: true, force: true });
  }

  async list(filter: { platform?: string; fleet?: string }): Promise<OwnedNode[]> {
    const root = path.join(this.env.stateDir, 'nodes');
    const names = await fs.readdir(root).catch(() => [] as string[]);
    const nodes: OwnedNode[] = [];
    for (const nodeId of names.sort()) {
      const dir = path.join(root, nodeId);
      const labels = await readJson<NodeLabels>(path.join(dir, 'labels.json'));
      if (!labels) continue;
      if (filter.platform && labels.platform !== filter.platform) continue;
      if (filter.fleet && labels.fleet !== filter.fleet) continue;
      const identity = await readJson<PublicIdentity & { nodeId: string }>(path.join(dir, 'identity.json'));
      const pid = Number(await fs.readFile(path.join(dir, 'pid'), 'utf8').catch(() => '0'));
      nodes.push({ nodeId, labels, identity, running: pid > 0 && isOurProcess(pid, dir) });
    }
    return nodes;
  }
}
