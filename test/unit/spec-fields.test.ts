/**
 * Field rules of the spec, one concern per test: quantities, names, keys, cron, rollout, targets
 * and the image/target format compatibility check.
 */
import { SpecError, type SpecIssue } from '../../src/errors';
import { OUTPUT_FORMATS, parseSpec, TARGET_TYPES, type Spec } from '../../src/platform';
import { cronProblem } from '../../src/platform/cron';
import { hostKeyPinProblem, sshPublicKeyProblem } from '../../src/platform/openssh';
import { formatSize, parseDuration, parseSize } from '../../src/platform/quantities';
import { closest, editDistance } from '../../src/platform/suggest';

const ED25519 = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJnd1J/6mMiM1YhkpwWUlcOf+XAfnRAa+2LP1c435yJa ops@example.com';
const FINGERPRINT = 'SHA256:CTc24pEOxm69TNsVwD2/avVZ/UubgMFDZTRZ84VQSoU';

/** A valid spec as a JS object; tests change one thing and serialise it (JSON is YAML). */
function baseDoc(): Record<string, any> {
  return {
    apiVersion: 'kubedos.dev/v1alpha1',
    kind: 'Platform',
    metadata: { name: 't' },
    images: { worker: { outputs: ['qcow2'] } },
    targets: { local: { type: 'qemu' } },
    fleets: { workers: { image: 'worker', target: 'local' } },
  };
}

function parse(doc: unknown): Spec {
  return parseSpec(JSON.stringify(doc), 'kubedos.yaml', { checkSources: false });
}

function issuesOf(doc: unknown): readonly SpecIssue[] {
  try {
    parse(doc);
  } catch (error) {
    if (error instanceof SpecError) return error.issues;
    throw error;
  }
  return [];
}

function only(doc: unknown): { path: string; message: string } {
  const issues = issuesOf(doc);
  expect(issues).toHaveLength(1);
  return { path: issues[0].path, message: issues[0].message };
}

describe('quantities', () => {
  test.each([
    ['500ms', 500],
    ['90s', 90_000],
    ['5m', 300_000],
    ['1h30m', 5_400_000],
    ['0s', 0],
    ['2h0m5s250ms', 7_205_250],
  ])('duration %s = %d ms', (text, ms) => expect(parseDuration(text)).toBe(ms));

  test.each(['', '5', '5 m', '5min', '1m1h', '-5s', '1.5s', '5m5m'])('duration %p is rejected', (text) => expect(parseDuration(text)).toBeUndefined());

  test.each([
    ['2GiB', 2 * 2 ** 30],
    ['512MiB', 512 * 2 ** 20],
    ['10GB', 10e9],
    ['1TiB', 2 ** 40],
    ['4096B', 4096],
  ])('size %s = %d bytes', (text, bytes) => expect(parseSize(text)).toBe(bytes));

  test.each(['2G', '2 GiB', '1.5GiB', 'GiB', '2gib', '99999999999TiB'])('size %p is rejected', (text) => expect(parseSize(text)).toBeUndefined());

  test('formatSize picks the largest exact binary unit', () => {
    expect(formatSize(2 * 2 ** 30)).toBe('2GiB');
    expect(formatSize(1536 * 2 ** 20)).toBe('1536MiB');
    expect(formatSize(1000)).toBe('1000B');
  });

  test('in a spec, durations become milliseconds and sizes bytes', () => {
    const doc = baseDoc();
    doc.images.worker.disk = { size: '10GiB' };
    doc.fleets.workers.healthCheck = { type: 'tcp', port: 22, timeout: '90s', interval: '500ms' };
    const spec = parse(doc);
    expect(spec.images.worker.disk.size).toBe(10 * 2 ** 30);
    expect(spec.fleets.workers.healthCheck).toEqual({ type: 'tcp', port: 22, timeout: 90_000, interval: 500, retries: 3 });
  });

  test('sizes carry a unit and a sane minimum', () => {
    const doc = baseDoc();
    doc.images.worker.disk = { size: 2 };
    expect(only(doc)).toEqual({ path: 'images.worker.disk.size', message: 'expected a string, got 2' });
    doc.images.worker.disk = { size: '2G' };
    expect(only(doc).message).toMatch(/^invalid size "2G": write an integer with a unit/);
    doc.images.worker.disk = { size: '2MiB' };
    expect(only(doc).message).toBe('size "2MiB" is below the minimum of 64MiB');
  });
});

describe('names', () => {
  test.each(['Worker', '1worker', 'worker-', 'wor_ker', 'a'.repeat(64)])('%p is not a valid fleet name', (bad) => {
    const doc = baseDoc();
    doc.fleets = { [bad]: doc.fleets.workers };
    expect(only(doc)).toMatchObject({ path: 'fleets', message: expect.stringMatching(/is not a valid fleet name: use 1-63 lowercase letters/) });
  });

  test('roles are free DNS labels and default to the image name', () => {
    const doc = baseDoc();
    doc.images.ci = { role: 'build-agent' };
    const spec = parse(doc);
    expect(spec.images.ci.role).toBe('build-agent');
    expect(spec.images.worker.role).toBe('worker');
    expect(spec.images.ci.hostnamePrefix).toBe('ci');
  });

  test('at least one image', () => {
    const doc = baseDoc();
    doc.images = {};
    doc.fleets = {};
    expect(only(doc)).toEqual({ path: 'images', message: 'define at least one image' });
  });
});

describe('images', () => {
  test('unknown and duplicate formats', () => {
    const doc = baseDoc();
    doc.images.worker.outputs = ['raw', 'qcow2', 'raw'];
    expect(only(doc)).toEqual({ path: 'images.worker.outputs[2]', message: 'duplicate format "raw" (first at [0])' });
    doc.images.worker.outputs = [];
    expect(only(doc)).toEqual({ path: 'images.worker.outputs', message: 'must list at least 1 item' });
  });

  test('every catalog format is accepted (installer-media with the ISO it repacks)', () => {
    const doc = baseDoc();
    doc.images.worker.outputs = OUTPUT_FORMATS.map((f) => f.name);
    expect(only(doc)).toMatchObject({ path: 'images.worker.installerIso', message: expect.stringMatching(/installer-media output needs installerIso/) });
    doc.images.worker.installerIso = { source: 'debian-mini', sha256: 'a'.repeat(64) };
    expect(parse(doc).images.worker.outputs).toHaveLength(OUTPUT_FORMATS.length);
  });

  test('installerIso: a path is relative to the spec file, URLs and debian-mini stay, other schemes and bad digests are refused', () => {
    const sha256 = 'b'.repeat(64);
    const at = (source: string) => {
      const doc = baseDoc();
      doc.images.worker.installerIso = { source, sha256 };
      return parseSpec(JSON.stringify(doc), '/srv/platform/kubedos.yaml', { checkSources: false }).images.worker.installerIso?.source;
    };
    expect(at('media/netinst.iso')).toBe('/srv/platform/media/netinst.iso');
    expect(at('/isos/netinst.iso')).toBe('/isos/netinst.iso');
    expect(at('https://cdimage.example/netinst.iso')).toBe('https://cdimage.example/netinst.iso');
    expect(at('debian-mini')).toBe('debian-mini');
    const doc = baseDoc();
    doc.images.worker.installerIso = { source: 'ftp://mirror.example/netinst.iso', sha256 };
    expect(only(doc)).toMatchObject({ path: 'images.worker.installerIso.source', message: expect.stringMatching(/only http\(s\) URLs are fetched/) });
    doc.images.worker.installerIso = { source: 'debian-mini', sha256: 'B'.repeat(64) };
    expect(only(doc)).toMatchObject({ path: 'images.worker.installerIso.sha256', message: expect.stringMatching(/not a sha256/) });
  });

  test.each([
    ['etc/motd', /must be absolute/],
    ['/etc/../root/x', /must not contain \. or \.\. segments/],
    ['/etc/kubedos/', /must name a file/],
    ['/etc//motd', /empty segments/],
  ])('payload path %p is refused', (bad, why) => {
    const doc = baseDoc();
    doc.images.worker.files = [{ path: bad, content: 'x' }];
    expect(only(doc)).toMatchObject({ path: 'images.worker.files[0].path', message: expect.stringMatching(why) });
  });

  test('an unquoted 0644 (the number 644) is explained', () => {
    const doc = baseDoc();
    doc.images.worker.files = [{ path: '/etc/x', content: 'x', mode: 644 }];
    expect(only(doc).message).toMatch(/quoted octal string such as "0644", got the number 644/);
  });

  test('modes are normalised to four digits', () => {
    const doc = baseDoc();
    doc.images.worker.files = [{ path: '/usr/local/bin/x', content: 'x', mode: '755' }];
    expect(parse(doc).images.worker.files[0].mode).toBe('0755');
  });

  test('duplicate file paths and unit names', () => {
    const doc = baseDoc();
    doc.images.worker.files = [
      { path: '/a', content: '1' },
      { path: '/a', content: '2' },
    ];
    doc.images.worker.units = [
      { name: 'a.service', content: '[Unit]' },
      { name: 'a.service', content: '[Unit]' },
    ];
    expect(issuesOf(doc).map((i) => i.path)).toEqual(['images.worker.files[1]', 'images.worker.units[1]']);
  });

  test('unit names need a unit suffix; scripts need an interpreter line', () => {
    const doc = baseDoc();
    doc.images.worker.units = [{ name: 'hello', content: '[Unit]' }];
    doc.images.worker.firstBoot = [{ name: '10-x', script: 'echo hi' }];
    expect(issuesOf(doc).map((i) => i.message)).toEqual([
      expect.stringMatching(/^invalid unit name "hello": expected a systemd unit file name ending in \.service/),
      'the script must start with an interpreter line such as #!/bin/sh',
    ]);
  });

  test('authorized keys must be OpenSSH public keys', () => {
    const doc = baseDoc();
    doc.images.worker.authorizedKeys = [ED25519, 'ssh-ed25519 notbase64!', '-----BEGIN OPENSSH PRIVATE KEY-----'];
    expect(issuesOf(doc).map((i) => [i.path, i.message])).toEqual([
      ['images.worker.authorizedKeys[1]', expect.stringMatching(/not base64/)],
      ['images.worker.authorizedKeys[2]', expect.stringMatching(/this is a private key/)],
    ]);
  });

  test('passwords stay out unless asked for', () => {
    expect(parse(baseDoc()).images.worker.passwordLogin).toBe(false);
  });
});

describe('OpenSSH keys', () => {
  test('a valid ed25519 key and fingerprint', () => {
    expect(sshPublicKeyProblem(ED25519)).toBeUndefined();
    expect(hostKeyPinProblem(ED25519)).toBeUndefined();
    expect(hostKeyPinProblem(FINGERPRINT)).toBeUndefined();
  });

  test('a key whose data encodes another type is mislabelled', () => {
    expect(sshPublicKeyProblem(ED25519.replace('ssh-ed25519', 'ssh-rsa'))).toMatch(/encodes a "ssh-ed25519" key, not "ssh-rsa"/);
  });

  test('truncated fingerprints and MD5 fingerprints are refused', () => {
    expect(hostKeyPinProblem(FINGERPRINT.slice(0, -2))).toMatch(/malformed fingerprint/);
    expect(hostKeyPinProblem('16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48')).toMatch(/MD5/);
  });
});

describe('free strings that reach a command line, a file or a path are held to their grammar', () => {
  test.each([
    ['base.mirror', (d: Record<string, any>) => (d.base = { mirror: 'http://deb.debian.org/debian\ndeb http://evil/ ./' }), /^base\.mirror: mirror ".*" must not contain spaces or control characters$/],
    ['an SSH host that reads as an option', (d: Record<string, any>) => (d.targets.local.host = { host: '-oProxyCommand=reboot', hostKey: FINGERPRINT }), /^targets\.local\.host\.host: invalid host/],
    ['identityFile', (d: Record<string, any>) => (d.targets.local.host = { host: 'h', hostKey: FINGERPRINT, identityFile: 'key\n' }), /^targets\.local\.host\.identityFile: identityFile "key\\n" must not contain control characters$/],
    ['an ssh check argument', (d: Record<string, any>) => (d.fleets.workers.healthCheck = { type: 'ssh', command: ['true', 'a\u0000b'] }), /^fleets\.workers\.healthCheck\.command\[1\]: a command argument cannot contain a NUL byte$/],
  ])('%s', (_what, mutate, message) => {
    const doc = baseDoc();
    mutate(doc);
    const found = issuesOf(doc).map((i) => `${i.path}: ${i.message}`);
    expect(found).toEqual([expect.stringMatching(message)]);
  });
});

describe('targets', () => {
  test('every registered target type has a schema variant', () => {
    const minimal: Record<string, Record<string, unknown>> = {
      aws: { region: 'eu-west-1', subnet: 'subnet-0123456789abcdef0', securityGroups: ['sg-0123456789abcdef0'], importBucket: 'kubedos-imports' },
      proxmox: { node: 'pve1', ssh: { host: 'pve1', hostKey: FINGERPRINT } },
      vsphere: { url: 'https://vc.example/sdk', datastore: 'ds1', tls: { caFile: '/etc/ssl/vc.pem' } },
      baremetal: {
        bootServer: { url: 'http://10.0.0.5:8780' },
        credentials: { username: 'root', passwordEnv: 'BMC_PASSWORD' },
        tls: { insecure: true },
        machines: [{ name: 'm1', bmc: 'https://10.0.0.21', mac: '52:54:00:00:00:01', address: '10.0.1.21' }],
      },
      firecracker: { hosts: ['local'], network: { bridge: 'br0' } },
      azure: { subscription: '00000000-0000-0000-0000-000000000000', resourceGroup: 'rg', location: 'westeurope', storage: { account: 'kubedos' }, subnet: '/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/vnet/subnets/nodes' },
      gcp: { project: 'my-project', zone: 'europe-west4-a', bucket: 'kubedos-images' },
    };
    const doc = baseDoc();
    doc.fleets = {};
    doc.targets = Object.fromEntries(TARGET_TYPES.map((t) => [t.name, { type: t.name, ...minimal[t.name] }]));
    expect(Object.keys(parse(doc).targets)).toEqual(TARGET_TYPES.map((t) => t.name));
  });

  test('ssh connections are defaulted and accept knownHosts as the pin', () => {
    const doc = baseDoc();
    doc.targets.local.host = { host: 'kvm1.lab', knownHosts: '~/.ssh/known_hosts' };
    expect(parse(doc).targets.local).toMatchObject({ host: { host: 'kvm1.lab', port: 22, user: 'root', knownHosts: '~/.ssh/known_hosts' } });
  });

  test('a bad hostKey pin is reported at hostKey', () => {
    const doc = baseDoc();
    doc.targets.local.host = { host: 'kvm1', hostKey: 'SHA256:short' };
    expect(only(doc)).toMatchObject({ path: 'targets.local.host.hostKey', message: expect.stringMatching(/malformed fingerprint/) });
  });

  test('names that reach a Proxmox command line are held to Proxmox\'s grammar', () => {
    const doc = baseDoc();
    doc.targets.pve = { type: 'proxmox', node: 'pve1;reboot', storage: 'local-lvm $(reboot)', bridge: 'vmbr0\nx', ssh: { host: 'pve1', hostKey: FINGERPRINT } };
    doc.fleets.workers.target = 'pve';
    const found = issuesOf(doc).map((i) => `${i.path}: ${i.message}`);
    expect(found).toEqual([
      expect.stringMatching(/^targets\.pve\.node: invalid Proxmox node name "pve1;reboot": Proxmox names nodes by host name/),
      expect.stringMatching(/^targets\.pve\.storage: invalid Proxmox storage id "local-lvm \$\(reboot\)": a storage id is lowercase/),
      expect.stringMatching(/^targets\.pve\.bridge: invalid Proxmox bridge "vmbr0\\nx": a Linux bridge name/),
    ]);
  });

  test('a reversed vmidRange', () => {
    const doc = baseDoc();
    doc.targets.pve = { type: 'proxmox', node: 'pve1', ssh: { host: 'pve1', hostKey: FINGERPRINT }, vmidRange: [9999, 9000] };
    expect(only(doc)).toEqual({ path: 'targets.pve.vmidRange', message: 'vmidRange [9999, 9000] is reversed; write [low, high]' });
  });

  test('fleets must fit the VM id range of a Proxmox target', () => {
    const doc = baseDoc();
    doc.targets.pve = { type: 'proxmox', node: 'pve1', ssh: { host: 'pve1', hostKey: FINGERPRINT }, vmidRange: [9000, 9009] };
    doc.fleets = { a: { image: 'worker', target: 'pve', replicas: 6 }, b: { image: 'worker', target: 'pve', replicas: 5 } };
    expect(only(doc)).toEqual({
      path: 'targets.pve.vmidRange',
      message: 'vmidRange [9000, 9009] holds 10 VMs, but the fleets on target "pve" ask for 11 replicas; widen it or lower replicas',
    });
  });
});

describe('format and target compatibility', () => {
  test.each([
    ['qemu', {}, 'qcow2'],
    ['proxmox', { node: 'n', ssh: { host: 'h', hostKey: FINGERPRINT } }, 'qcow2'],
  ])('a %s target needs a fitting output', (type, extra, suggested) => {
    const doc = baseDoc();
    doc.images.worker.outputs = ['vmdk'];
    doc.targets.t = { type, ...extra };
    doc.fleets.workers.target = 't';
    expect(only(doc)).toEqual({
      path: 'fleets.workers.image',
      message: expect.stringMatching(new RegExp(`^image "worker" cannot be deployed to target "t": a ${type} target needs .*; add ${suggested} to images\\.worker\\.outputs$`)),
    });
  });

  test('qemu accepts raw; hollow accepts anything', () => {
    const doc = baseDoc();
    doc.images.worker.outputs = ['raw'];
    expect(issuesOf(doc)).toEqual([]);
    doc.images.worker.outputs = ['pxe'];
    doc.targets.local = { type: 'hollow' };
    expect(issuesOf(doc)).toEqual([]);
  });

  test('the default output (qcow2) is what is checked when outputs is omitted', () => {
    const doc = baseDoc();
    doc.targets.local = { type: 'proxmox', node: 'n', ssh: { host: 'h', hostKey: FINGERPRINT } };
    delete doc.images.worker.outputs;
    expect(issuesOf(doc)).toEqual([]);
    doc.images.worker.outputs = ['raw'];
    expect(only(doc).message).toMatch(/a proxmox target needs qcow2 but the image outputs raw; add qcow2/);
  });
});

describe('fleets and rollouts', () => {
  test('percentages and counts', () => {
    const doc = baseDoc();
    doc.fleets.workers.rollout = { maxSurge: '25%', maxUnavailable: 1 };
    expect(parse(doc).fleets.workers.rollout).toEqual({ maxSurge: '25%', maxUnavailable: 1, failureThreshold: 1, batchSize: 50 });
    doc.fleets.workers.rollout = { maxSurge: '250%' };
    expect(only(doc)).toEqual({ path: 'fleets.workers.rollout.maxSurge', message: 'expected a non-negative integer or a percentage such as "25%", got "250%"' });
  });

  test('a rollout that could never make progress', () => {
    const doc = baseDoc();
    doc.fleets.workers.rollout = { maxSurge: 0, maxUnavailable: '0%' };
    expect(only(doc)).toMatchObject({ path: 'fleets.workers.rollout', message: expect.stringMatching(/both 0/) });
  });

  test('replicas are bounded', () => {
    const doc = baseDoc();
    doc.fleets.workers.replicas = 10_001;
    expect(only(doc)).toEqual({ path: 'fleets.workers.replicas', message: 'must be at most 10000, got 10001' });
  });

  test('health checks are discriminated on type', () => {
    const doc = baseDoc();
    doc.fleets.workers.healthCheck = { type: 'http', port: 8080 };
    expect(parse(doc).fleets.workers.healthCheck).toEqual({ type: 'http', port: 8080, path: '/', expectStatus: 200, timeout: 300_000, interval: 5_000, retries: 3 });
    doc.fleets.workers.healthCheck = { type: 'ssh', command: 'systemctl is-active x' };
    expect(only(doc)).toEqual({ path: 'fleets.workers.healthCheck.command', message: 'expected a list, got "systemctl is-active x"' });
    doc.fleets.workers.healthCheck = { type: 'icmp' };
    expect(only(doc).message).toBe('unknown health check type "icmp"; expected one of readiness, tcp, http, ssh');
  });
});

describe('schedules', () => {
  test.each(['0 3 * * *', '*/15 * * * *', '0 4 * * sun', '0 0 1 jan,jul *', '0 9-17/2 * * 1-5', '0 0 * * 7'])('cron %p is accepted', (cron) =>
    expect(cronProblem(cron)).toBeUndefined(),
  );

  test.each([
    ['0 3 * *', /expected 5 fields/],
    ['0 3 * * * *', /expected 5 fields/],
    ['60 3 * * *', /minute field: 60 is out of range 0-59/],
    ['0 24 * * *', /hour field: 24 is out of range 0-23/],
    ['0 3 0 * *', /day-of-month field: 0 is out of range 1-31/],
    ['0 3 * 13 *', /month field: 13 is out of range 1-12/],
    ['0 3 * * funday', /day-of-week field: "funday" is not a number/],
    ['*/0 * * * *', /step "0" must be a positive integer/],
    ['0 5-3 * * *', /range 5-3 is reversed/],
  ])('cron %p is refused', (cron, why) => expect(cronProblem(cron)).toMatch(why));

  test('schedule fleets default to every fleet, sorted', () => {
    const doc = baseDoc();
    doc.fleets.alpha = { image: 'worker', target: 'local' };
    doc.schedules = { nightly: { cron: '0 3 * * *' } };
    expect(parse(doc).schedules.nightly.fleets).toEqual(['alpha', 'workers']);
  });

  test('unknown actions and time zones', () => {
    const doc = baseDoc();
    doc.schedules = { nightly: { cron: '0 3 * * *', action: 'rebuild', timezone: 'Mars/Olympus' } };
    expect(issuesOf(doc).map((i) => i.message)).toEqual([
      'unknown schedule action "rebuild"; expected one of rebuildHerd, build, rollout',
      'unknown time zone "Mars/Olympus": expected an IANA name such as UTC or Europe/Berlin',
    ]);
  });
});

describe('suggestions', () => {
  test('edit distance counts transpositions as one edit', () => {
    expect(editDistance('pakcages', 'packages')).toBe(1);
    expect(editDistance('', 'abc')).toBe(3);
  });

  test('closest only suggests plausible typos', () => {
    expect(closest('wrker', ['worker', 'master'])).toBe('worker');
    expect(closest('zzz', ['worker', 'master'])).toBeUndefined();
  });
});
