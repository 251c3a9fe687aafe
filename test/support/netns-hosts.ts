/**
 * Test "machines": a network namespace per host, attached by a veth pair to the cluster's bridge
 * (test/support/temporal-cluster.ts), so what runs inside reaches only what listens on the
 * bridge (the Temporal frontend, the S3 server) — not the test's loopback, not the other hosts'
 * loopback services. Each host has a KUBEDOS_HOME of its own; processes are started with
 * `ip netns exec`, which execs them (their pid is the program's, e.g. `node dist/workers/kvm.js`).
 */
import { mkdirSync } from 'node:fs';
import { runTool } from '../../src/exec/run';
import type { ClusterInfo } from './temporal-cluster';

export interface TestHost {
  name: string;
  /** The network namespace, `kdcl-<bridge id>-<name>`. */
  netns: string;
  /** Its address on the bridge. */
  ip: string;
  /** KUBEDOS_HOME of this host. */
  home: string;
  /** argv that runs `argv` inside the host's network namespace. */
  exec(argv: readonly string[]): string[];
}

/** Make host number `index` (1…200) on the cluster's bridge, with `home` as its state directory. */
export async function createHost(bridge: NonNullable<ClusterInfo['bridge']>, name: string, index: number, home: string): Promise<TestHost> {
  const id = bridge.name.replace(/^kdcl-/, '');
  const netns = `kdcl-${id}-${name}`;
  const veth = `kdh${id}${index}`.slice(0, 15);
  const ip = `${bridge.prefix}.${10 + index}`;
  await runTool(['ip', 'netns', 'add', netns]);
  try {
    await runTool(['ip', 'link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
    await runTool(['ip', 'link', 'set', veth, 'master', bridge.name, 'up']);
    await runTool(['ip', '-n', netns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
    await runTool(['ip', '-n', netns, 'link', 'set', 'eth0', 'up']);
    await runTool(['ip', '-n', netns, 'link', 'set', 'lo', 'up']);
  } catch (err) {
    await runTool(['ip', 'netns', 'del', netns]).catch(() => undefined);
    throw err;
  }
  mkdirSync(home, { recursive: true });
  return { name, netns, ip, home, exec: (argv) => ['ip', 'netns', 'exec', netns, ...argv] };
}

/** Remove the host's namespace (its veth goes with it). */
export async function deleteHost(host: TestHost): Promise<void> {
  await runTool(['ip', 'netns', 'del', host.netns]).catch(() => undefined);
}

/** The network namespace a process runs in, by name (`ip netns identify`), or '' for the root one. */
export async function netnsOf(pid: number): Promise<string> {
  const { stdout } = await runTool(['ip', 'netns', 'identify', String(pid)]);
  return stdout.trim();
}
