/**
 * The Firecracker target without hosts: its spec grammar (names that reach host command lines),
 * capacity bounds, the names and limits it derives per node, placement, the host scripts' syntax
 * and the API client's HTTP framing.
 */
import { execFileSync } from 'node:child_process';
import { stringify } from 'yaml';
import { SpecError } from '../../src/errors';
import { parseSpec } from '../../src/platform';
import { parseResponse, requestBytes } from '../../src/targets/firecracker/api';
import { CREATE_SCRIPT, jailerArgv, LAUNCH_SCRIPT, LIST_SCRIPT, NAT_SCRIPT, parseList, parsePlace, PLACE_SCRIPT, TEARDOWN_SCRIPT } from '../../src/targets/firecracker/host-scripts';
import { cgroupArgs, cgroupDirs, guestMac, jailId, natAddresses, natKernelArg, natTable, tapName } from '../../src/targets/firecracker/names';
import { hostCapacity, leastLoaded } from '../../src/targets/firecracker/placement';

const PIN = 'SHA256:CTc24pEOxm69TNsVwD2/avVZ/UubgMFDZTRZ84VQSoU';
const GiB = 2 ** 30;
const MiB = 2 ** 20;

function doc(target: Record<string, unknown>, replicas = 2) {
  return {
    apiVersion: 'kubedos.dev/v1alpha1',
    kind: 'Platform',
    metadata: { name: 'p' },
    images: { qa: { outputs: ['firecracker'] } },
    targets: { fc: { type: 'firecracker', hosts: [{ host: '10.0.0.1', hostKey: PIN }], network: { bridge: 'br0' }, ...target } },
    fleets: { qa: { image: 'qa', target: 'fc', replicas } },
  };
}

function problems(d: object): string[] {
  try {
    parseSpec(stringify(d), 'kubedos.yaml');
  } catch (err) {
    if (err instanceof SpecError) return err.issues.map((i) => `${i.path}: ${i.message}`);
    throw err;
  }
  return [];
}

describe('spec', () => {
  test('a minimal target is completed with the documented defaults', () => {
    const spec = parseSpec(stringify(doc({})), 'kubedos.yaml');
    expect(spec.targets.fc).toEqual({
      type: 'firecracker',
      hosts: [{ host: '10.0.0.1', port: 22, user: 'root', hostKey: PIN }],
      firecracker: '/usr/local/bin/firecracker',
      jailer: '/usr/local/bin/jailer',
      chrootBase: '/srv/jailer',
      uid: 10_000,
      gid: 10_000,
      cgroupVersion: 2,
      network: { bridge: 'br0' },
      limits: { cpuOversubscription: 4, memoryOversubscription: 1 },
      layerSize: 4 * GiB,
      memory: 512 * MiB,
      cpus: 1,
    });
    expect(parseSpec(stringify(doc({ hosts: ['local'], network: { nat: { subnet: '172.30.0.0/16' } } })), 'kubedos.yaml').targets.fc).toMatchObject({ hosts: ['local'], network: { nat: { subnet: '172.30.0.0/16' } } });
  });

  test('names that reach a host command line are held to their grammar', () => {
    expect(problems(doc({ network: { bridge: 'br0;reboot' } }))).toEqual([expect.stringMatching(/^targets\.fc\.network\.bridge: invalid bridge name "br0;reboot": a Linux interface name/)]);
    expect(problems(doc({ network: { bridge: 'a-very-long-bridge' } }))).toHaveLength(1);
    expect(problems(doc({ firecracker: 'firecracker' }))).toEqual([expect.stringMatching(/^targets\.fc\.firecracker: invalid firecracker path "firecracker": an absolute path/)]);
    expect(problems(doc({ jailer: '/usr/bin/jail er' }))).toEqual([expect.stringMatching(/^targets\.fc\.jailer: invalid jailer path/)]);
    expect(problems(doc({ chrootBase: '/srv/../etc' }))).toEqual([expect.stringMatching(/^targets\.fc\.chrootBase: invalid chroot base "\/srv\/\.\.\/etc"/)]);
    expect(problems(doc({ firecracker: '/usr/bin/fc' }))).toEqual([expect.stringMatching(/^targets\.fc\.firecracker: the jailer runs only an executable whose file name contains "firecracker"/)]);
    expect(problems(doc({ chrootBase: `/${'x'.repeat(60)}` }))).toEqual([expect.stringMatching(/^targets\.fc\.chrootBase: chrootBase .* is too long: the API socket path in a jail would be \d+ bytes/)]);
    expect(problems(doc({ uid: 0 }))).toEqual([expect.stringMatching(/^targets\.fc\.uid: /)]);
    expect(problems(doc({ hosts: [] }))).toEqual([expect.stringMatching(/^targets\.fc\.hosts: /)]);
    expect(problems(doc({ hosts: [{ host: '10.0.0.1' }] }))).toEqual([expect.stringMatching(/^targets\.fc\.hosts\[0\]: .*host key must be pinned|^targets\.fc\.hosts\.0: /)]);
    expect(problems(doc({ hosts: ['local', 'local'] }))).toEqual([expect.stringMatching(/host local is listed twice/)]);
  });

  test('a NAT subnet is a network address in CIDR form', () => {
    expect(problems(doc({ network: { nat: { subnet: '172.30.0.1/16' } } }))).toEqual([expect.stringMatching(/host bits are not zero; write the network address, e\.g\. 172\.30\.0\.0\/16/)]);
    expect(problems(doc({ network: { nat: { subnet: '172.30.0.0/30' } } }))).toEqual([expect.stringMatching(/prefix of \/8 to \/29/)]);
    expect(problems(doc({ network: { nat: { subnet: '300.0.0.0/8' } } }))).toHaveLength(1);
  });

  test('maxMicrovms per host and the NAT subnet bound the fleets on a target', () => {
    expect(problems(doc({ limits: { maxMicrovms: 5 }, hosts: [{ host: 'a', hostKey: PIN }, { host: 'b', hostKey: PIN }] }, 10))).toEqual([]);
    expect(problems(doc({ limits: { maxMicrovms: 5 } }, 10))).toEqual(['targets.fc.limits: limits.maxMicrovms 5 on 1 host holds 5 microVMs, but the fleets on target "fc" ask for 10 replicas; widen it or lower replicas']);
    expect(problems(doc({ network: { nat: { subnet: '10.9.0.0/28' } } }, 5))).toEqual(['targets.fc.network: network.nat.subnet 10.9.0.0/28 holds 4 /30s per host, 4 microVMs on 1 host, but the fleets on target "fc" ask for 5 replicas; widen it or lower replicas']);
  });
});

describe('names and limits', () => {
  test('jail ids, taps and MACs are stable, distinct per target and node, and within their grammars', () => {
    const long = `${'a'.repeat(60)}.example-0001`;
    for (const id of ['p-qa-0001', long]) {
      expect(jailId('fc', id)).toMatch(/^[A-Za-z0-9-]{1,32}$/);
      expect(tapName('fc', id)).toMatch(/^kf[0-9a-f]{13}$/);
      expect(guestMac('fc', id)).toMatch(/^06(:[0-9a-f]{2}){5}$/);
    }
    expect(jailId('fc', 'p-qa-0001')).toBe(jailId('fc', 'p-qa-0001'));
    expect(jailId('fc', 'p-qa-0001')).toMatch(/^p-qa-0001-[0-9a-f]{12}$/);
    expect(new Set([jailId('fc', 'a'), jailId('fc2', 'a'), jailId('fc', 'b')]).size).toBe(3);
    expect(tapName('fc', 'a')).not.toBe(tapName('fc2', 'a'));
    expect(natTable('fc')).toMatch(/^kubedos_[0-9a-f]{12}$/);
  });

  test('NAT: one /30 per node, host end on the tap, guest end by ip= for systemd-network-generator', () => {
    expect(natAddresses('172.30.0.0/16', 0)).toEqual({ host: '172.30.0.1', guest: '172.30.0.2', prefix: 30, netmask: '255.255.255.252' });
    expect(natAddresses('172.30.0.0/16', 64)).toMatchObject({ host: '172.30.1.1', guest: '172.30.1.2' });
    expect(natKernelArg('172.30.0.0/16', 1)).toBe('ip=172.30.0.6::172.30.0.5:255.255.255.252::eth0:off');
  });

  test('cgroup limits: the vCPUs as CPU time, the guest memory plus the VMM overhead; the jailer makes one directory per controller (v1) or one (v2)', () => {
    expect(cgroupArgs({ version: 2, cpus: 2, memoryBytes: 512 * MiB })).toEqual(['cpu.max=200000 100000', `memory.max=${640 * MiB}`]);
    expect(cgroupArgs({ version: 1, cpus: 1, memoryBytes: 256 * MiB })).toEqual(['cpu.cfs_period_us=100000', 'cpu.cfs_quota_us=100000', `memory.limit_in_bytes=${384 * MiB}`]);
    expect(cgroupDirs('/sys/fs/cgroup', 2, 'firecracker', 'j')).toEqual(['/sys/fs/cgroup/firecracker/j']);
    expect(cgroupDirs('/sys/fs/cgroup', 1, 'firecracker', 'j')).toEqual(['/sys/fs/cgroup/cpu/firecracker/j', '/sys/fs/cgroup/memory/firecracker/j']);
  });

  test('the jailer argv: documented options, firecracker options after --', () => {
    expect(jailerArgv({ jailer: '/j', firecracker: '/fc/firecracker', jailId: 'n-1', uid: 10, gid: 11, chrootBase: '/srv/jailer', cgroupVersion: 2, cgroups: ['cpu.max=100000 100000'], apiSocket: '/run/fc.sock' })).toEqual([
      '/j', '--id', 'n-1', '--exec-file', '/fc/firecracker', '--uid', '10', '--gid', '11', '--chroot-base-dir', '/srv/jailer', '--cgroup-version', '2', '--cgroup', 'cpu.max=100000 100000', '--', '--api-sock', '/run/fc.sock',
    ]);
  });
});

describe('placement', () => {
  const limits = { cpuOversubscription: 4, memoryOversubscription: 1 };
  test('a host takes microVMs while vCPUs, memory, maxMicrovms and NAT blocks all allow', () => {
    const host = { cpus: 8, memoryBytes: 16 * GiB };
    expect(hostCapacity(host, limits, { cpus: 1, memoryBytes: 512 * MiB })).toBe(32); // 8 CPUs × 4
    expect(hostCapacity(host, limits, { cpus: 1, memoryBytes: 1 * GiB })).toBe(16); // memory
    expect(hostCapacity(host, { ...limits, maxMicrovms: 10 }, { cpus: 1, memoryBytes: 256 * MiB })).toBe(10);
    expect(hostCapacity(host, { ...limits, natBlocks: 3 }, { cpus: 1, memoryBytes: 256 * MiB })).toBe(3);
    expect(hostCapacity(host, { ...limits, memoryOversubscription: 1.5 }, { cpus: 1, memoryBytes: 1 * GiB })).toBe(24);
  });

  test('the least loaded host with room, by share of capacity, ties to fewer microVMs then spec order', () => {
    expect(leastLoaded([{ capacity: 10, microvms: 5 }, { capacity: 100, microvms: 20 }])).toBe(1);
    expect(leastLoaded([{ capacity: 10, microvms: 1 }, { capacity: 10, microvms: 1 }])).toBe(0);
    expect(leastLoaded([{ capacity: 20, microvms: 2 }, { capacity: 10, microvms: 1 }])).toBe(1);
    expect(leastLoaded([{ capacity: 2, microvms: 2 }, { capacity: 0, microvms: 0 }])).toBeUndefined();
  });
});

describe('host scripts', () => {
  test.each([
    ['PLACE', PLACE_SCRIPT],
    ['CREATE', CREATE_SCRIPT],
    ['LAUNCH', LAUNCH_SCRIPT],
    ['TEARDOWN', TEARDOWN_SCRIPT],
    ['LIST', LIST_SCRIPT],
    ['NAT', NAT_SCRIPT],
  ])('the %s script is valid POSIX sh (dash -n)', (_name, script) => {
    expect(() => execFileSync('dash', ['-n', '-c', script])).not.toThrow();
  });

  test('their output is parsed exactly', () => {
    expect(parsePlace('8\n16384000\n3\nabsent\n')).toEqual({ cpus: 8, memoryBytes: 16384000 * 1024, nodes: 3, state: 'absent' });
    expect(parsePlace('8\n16384000\n3\nexists\n{"a":1}\n\n')).toMatchObject({ state: 'exists', existing: '{"a":1}' });
    expect(() => parsePlace('eight\n')).toThrow(/unexpected host facts/);
    expect(parseList('node a 12 1\n{"x":1}\nnode b 0 0\n{"y":2}\n')).toEqual([
      { name: 'a', pid: 12, live: true, json: '{"x":1}' },
      { name: 'b', pid: 0, live: false, json: '{"y":2}' },
    ]);
  });
});

describe('API client framing', () => {
  test('requests carry JSON with its length; responses are split by Content-Length, 204 has none', () => {
    expect(requestBytes('PUT', '/actions', { action_type: 'InstanceStart' }).toString()).toBe(
      'PUT /actions HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: 31\r\n\r\n{"action_type":"InstanceStart"}',
    );
    const two = Buffer.from('HTTP/1.1 204 No Content\r\nServer: Firecracker API\r\n\r\nHTTP/1.1 400 Bad Request\r\nContent-Length: 22\r\n\r\n{"fault_message":"no"}');
    const first = parseResponse(two)!;
    expect(first).toMatchObject({ status: 204, close: false });
    const second = parseResponse(two.subarray(first.length))!;
    expect([second.status, second.body.toString()]).toEqual([400, '{"fault_message":"no"}']);
    expect(parseResponse(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{"a"'))).toBeUndefined();
    expect(() => parseResponse(Buffer.from('SSH-2.0-x\r\n\r\n'))).toThrow(/not an HTTP response/);
  });
});
