/**
 * Loading spec files end to end: examples parse, every problem is reported in one pass with its
 * path and line:column, defaults are applied and the result is frozen.
 */
import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KubedosError, SpecError, type SpecIssue } from '../../src/errors';
import { DEFAULT_BASE_PACKAGES, formatSpecError, loadSpec, parseSpec } from '../../src/platform';

const ROOT = path.resolve(__dirname, '..', '..');
const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'specs');

async function loadIssues(file: string): Promise<readonly SpecIssue[]> {
  const error = await loadSpec(file).then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof SpecError)) throw new Error(`expected a SpecError, got ${String(error)}`);
  return error.issues;
}

function parseIssues(text: string, file = 'kubedos.yaml'): readonly SpecIssue[] {
  try {
    parseSpec(text, file, { checkSources: false });
  } catch (error) {
    if (error instanceof SpecError) return error.issues;
    throw error;
  }
  throw new Error('expected the spec to be rejected');
}

describe('examples', () => {
  test('the quickstart parses to the documented shape', async () => {
    const spec = await loadSpec(path.join(ROOT, 'examples', 'quickstart', 'kubedos.yaml'));
    expect(Object.keys(spec.images)).toEqual(['worker']);
    expect(spec.images.worker.outputs).toEqual(['raw', 'qcow2', 'vmdk', 'ova']);
    expect(spec.targets.local).toMatchObject({ type: 'qemu', host: 'local', accel: 'auto' });
    expect(spec.fleets.workers).toMatchObject({ image: 'worker', target: 'local', replicas: 2, healthCheck: { type: 'readiness' } });
    expect(spec.schedules.nightly).toMatchObject({ cron: '0 3 * * *', action: 'rebuildHerd', fleets: ['workers'] });
    expect(spec.base.sourceDateEpoch).toBe(1735689600);
  });

  test('the roles example parses with every documented role', async () => {
    const spec = await loadSpec(path.join(ROOT, 'examples', 'roles'));
    const roles = Object.values(spec.images).map((i) => i.role);
    expect(roles.sort()).toEqual(['etcd', 'grafana', 'lb', 'master', 'prometheus', 'storage', 'worker']);
    expect(new Set(Object.values(spec.targets).map((t) => t.type))).toEqual(new Set(['proxmox', 'vsphere', 'firecracker', 'hollow']));
    expect(spec.fleets['scale-test'].replicas).toBe(1000);
    expect(spec.fleets['qa-workers']).toMatchObject({ image: 'worker', target: 'fc', replicas: 100 });
    expect(spec.schedules.nightly!.fleets).toEqual(['workers', 'qa-workers']);
  });

  test('the Firecracker example is the README\'s QA workers: a qa-worker bundle, a fleet on Firecracker hosts', async () => {
    const spec = await loadSpec(path.join(ROOT, 'examples', 'firecracker'));
    expect(spec.images['qa-worker']!.outputs).toEqual(['firecracker']);
    const target = spec.targets[spec.fleets['qa-workers']!.target]!;
    expect(target.type).toBe('firecracker');
    expect(target).toMatchObject({ hosts: [expect.objectContaining({ host: '10.0.0.21' }), expect.objectContaining({ host: '10.0.0.22' })], network: { bridge: 'qa0' } });
    expect(spec.fleets['qa-workers']).toMatchObject({ image: 'qa-worker', replicas: 10 });
  });
});

test('the minimal fixture parses: one image, everything else defaulted', async () => {
  const spec = await loadSpec(path.join(FIXTURES, 'minimal.yaml'));
  expect(spec.images.worker.outputs).toEqual(['qcow2']);
  expect(spec.targets).toEqual({});
});

describe('five mistakes', () => {
  test('all five are reported at once, in file order, each at its path and line', async () => {
    const file = path.join(FIXTURES, 'five-mistakes.yaml');
    const issues = await loadIssues(file);
    expect(issues.map((i) => i.path)).toEqual([
      'images.worker',
      'images.worker.outputs[2]',
      'targets.pve.ssh',
      'fleets.workers.healthCheck.timeout',
      'fleets.web.image',
    ]);
    expect(issues.map((i) => i.location)).toEqual([
      `${file}:16:5`,
      `${file}:17:27`,
      `${file}:26:7`,
      `${file}:37:16`,
      `${file}:39:12`,
    ]);
    const [typo, format, hostKey, duration, image] = issues.map((i) => i.message);
    expect(typo).toBe('unknown key "pakages"; did you mean "packages"?');
    expect(format).toMatch(/^unknown format "qcow3"; expected one of raw, qcow2, vmdk, /);
    expect(hostKey).toMatch(/^a host key must be pinned: set hostKey \(OpenSSH public key or SHA256 fingerprint\) or knownHosts/);
    expect(duration).toMatch(/^invalid duration "5 minutes"/);
    expect(image).toMatch(/^no image named "wrker" \(did you mean "worker"\?\); defined images: worker$/);
  });

  test('formatSpecError prints one "location path: message" line per issue', async () => {
    const error = await loadSpec(path.join(FIXTURES, 'five-mistakes.yaml')).catch((e: SpecError) => e);
    const lines = formatSpecError(error as SpecError).split('\n');
    expect(lines).toHaveLength(5);
    expect(lines[1]).toMatch(/five-mistakes\.yaml:17:27 images\.worker\.outputs\[2\]: unknown format "qcow3"; expected one of raw, qcow2, vmdk/);
  });
});

describe('YAML errors', () => {
  test('a syntax error is reported with line and column', async () => {
    const issues = await loadIssues(path.join(FIXTURES, 'syntax-error.yaml'));
    expect(issues).toHaveLength(1);
    expect(issues[0].message).toMatch(/^YAML syntax error: /);
    expect(issues[0].location).toMatch(/syntax-error\.yaml:\d+:\d+$/);
  });

  test('duplicate keys are errors naming the key', async () => {
    const issues = await loadIssues(path.join(FIXTURES, 'duplicate-key.yaml'));
    expect(issues).toEqual([
      expect.objectContaining({ path: 'images.worker.outputs', message: expect.stringMatching(/^duplicate key "outputs"/) as unknown }),
    ]);
    expect(issues[0].location).toMatch(/duplicate-key\.yaml:9:5$/);
  });

  test('an empty file says what a spec starts with', () => {
    expect(parseIssues('')[0].message).toMatch(/the spec is empty; it starts with "apiVersion: kubedos.dev\/v1alpha1"/);
  });

  test('a second YAML document is refused', () => {
    expect(parseIssues('a: 1\n---\nb: 2\n')[0]).toMatchObject({ message: expect.stringMatching(/^a spec is a single YAML document/) as unknown, location: 'kubedos.yaml:2:1' });
  });

  test('an unresolved alias is an error, not a crash', () => {
    expect(parseIssues('apiVersion: *nothing\n')[0].message).toMatch(/YAML/);
  });
});

const HEAD = 'apiVersion: kubedos.dev/v1alpha1\nkind: Platform\nmetadata: { name: t }\n';

describe('message classes', () => {
  test('type errors name the expected type and quote the value', () => {
    const issues = parseIssues(
      `${HEAD}images: { worker: {} }\ntargets: { local: { type: qemu } }\nfleets:\n  workers: { image: worker, target: local, replicas: two }\n`,
    );
    expect(issues).toEqual([expect.objectContaining({ path: 'fleets.workers.replicas', message: 'expected an integer, got "two"', location: 'kubedos.yaml:7:54' })]);
  });

  test('a fractional number where an integer belongs', () => {
    const issues = parseIssues(`${HEAD}images: { worker: {} }\ntargets: { local: { type: qemu, cpus: 1.5 } }\n`);
    expect(issues[0]).toMatchObject({ path: 'targets.local.cpus', message: 'expected an integer, got 1.5' });
  });

  test('negative replicas', () => {
    const issues = parseIssues(`${HEAD}images: { worker: {} }\ntargets: { local: { type: qemu } }\nfleets: { w: { image: worker, target: local, replicas: -1 } }\n`);
    expect(issues[0]).toMatchObject({ path: 'fleets.w.replicas', message: 'must be at least 0, got -1' });
  });

  test('a missing required field points at its parent key', () => {
    const issues = parseIssues(`${HEAD}images: { worker: {} }\ntargets: { local: { type: qemu } }\nfleets:\n  web:\n    target: local\n`);
    expect(issues).toEqual([expect.objectContaining({ path: 'fleets.web.image', message: 'required but missing; expected a string', location: 'kubedos.yaml:7:3' })]);
  });

  test('unknown keys without a close match list the allowed keys', () => {
    const issues = parseIssues(`${HEAD}images: { worker: { colour: blue } }\n`);
    expect(issues[0]).toMatchObject({ path: 'images.worker', message: expect.stringMatching(/^unknown key "colour"; allowed keys: role, hostnamePrefix, packages/) as unknown });
  });

  test('unknown keys at the top level', () => {
    const issues = parseIssues(`${HEAD}images: { worker: {} }\nfleet: {}\n`);
    expect(issues[0]).toMatchObject({ path: '', message: 'unknown key "fleet"; did you mean "fleets"?', location: 'kubedos.yaml:5:1' });
  });

  test('each unknown key of one mapping is its own issue', () => {
    const issues = parseIssues(`${HEAD}images: { worker: { rol: w, outputz: [raw] } }\n`);
    expect(issues.map((i) => i.message)).toEqual(['unknown key "rol"; did you mean "role"?', 'unknown key "outputz"; did you mean "outputs"?']);
  });

  test('unknown keys inside a target are suggested from that target type', () => {
    const issues = parseIssues(`${HEAD}images: { worker: {} }\ntargets: { pve: { type: proxmox, node: a, vmidRang: [1, 2], ssh: { host: h, knownHosts: /k } } }\n`);
    expect(issues[0]).toMatchObject({ path: 'targets.pve', message: 'unknown key "vmidRang"; did you mean "vmidRange"?' });
  });

  test('an inline secret is refused with a pointer to credentialsEnv', () => {
    const issues = parseIssues(`${HEAD}images: { worker: {} }\ntargets: { vc: { type: proxmox, node: pve1, ssh: { host: h, knownHosts: /k }, password: hunter2 } }\n`);
    expect(issues[0]).toMatchObject({ path: 'targets.vc', message: expect.stringContaining('secrets are never written in the spec') as unknown });
  });

  test('a fleet naming a missing target, and a schedule naming a missing fleet', () => {
    const issues = parseIssues(
      `${HEAD}images: { worker: {} }\ntargets: { local: { type: qemu } }\nfleets: { web: { image: worker, target: locl } }\nschedules: { n: { cron: "0 3 * * *", fleets: [web, wbe] } }\n`,
    );
    expect(issues.map((i) => [i.path, i.message])).toEqual([
      ['fleets.web.target', 'no target named "locl" (did you mean "local"?); defined targets: local'],
      ['schedules.n.fleets[1]', 'no fleet named "wbe" (did you mean "web"?); defined fleets: web'],
    ]);
  });

  test('an SSH host without a pinned key, through the local|ssh union', () => {
    const issues = parseIssues(`${HEAD}images: { worker: {} }\ntargets: { q: { type: qemu, host: { host: kvm1 } } }\n`);
    expect(issues).toEqual([expect.objectContaining({ path: 'targets.q.host', message: expect.stringMatching(/^a host key must be pinned/) as unknown })]);
  });

  test('a host that is neither "local" nor a mapping', () => {
    const issues = parseIssues(`${HEAD}images: { worker: {} }\ntargets: { q: { type: qemu, host: kvm1 } }\n`);
    expect(issues[0]).toMatchObject({ path: 'targets.q.host', message: expect.stringMatching(/^expected "local" or an SSH connection mapping .*, got "kvm1"$/) as unknown });
  });

  test('an unknown target type lists the known ones', () => {
    const issues = parseIssues(`${HEAD}images: { worker: {} }\ntargets: { x: { type: virtualbox } }\n`);
    expect(issues[0]).toMatchObject({ path: 'targets.x.type', message: expect.stringMatching(/^target type "virtualbox" has no driver in this build; this build deploys to .*qemu/) as unknown });
  });

  test('an invalid record key is reported at the key', () => {
    const issues = parseIssues(`${HEAD}images:\n  Worker: {}\n`);
    expect(issues[0]).toMatchObject({ path: 'images', message: expect.stringMatching(/^"Worker" is not a valid image name/) as unknown, location: 'kubedos.yaml:5:3' });
  });

  test('a wrong apiVersion', () => {
    const issues = parseIssues(HEAD.replace('v1alpha1', 'v2') + 'images: { w: {} }\n');
    expect(issues[0]).toMatchObject({ path: 'apiVersion', message: 'unsupported apiVersion "kubedos.dev/v2"; expected kubedos.dev/v1alpha1' });
  });
});

describe('the parsed spec', () => {
  const spec = parseSpec(`${HEAD}images: { worker: {} }\ntargets: { local: { type: qemu } }\nfleets: { workers: { image: worker, target: local } }\nschedules: { nightly: { cron: "0 3 * * *" } }\n`, 'kubedos.yaml');

  test('is fully defaulted', () => {
    expect(spec.base).toEqual({
      distro: 'debian',
      suite: 'bookworm',
      architecture: 'amd64',
      initramfsModules: [],
      mirror: 'http://deb.debian.org/debian',
      securityMirror: 'http://deb.debian.org/debian-security',
      components: ['main'],
      packages: [...DEFAULT_BASE_PACKAGES],
    });
    expect(spec.images.worker).toEqual({
      role: 'worker',
      hostnamePrefix: 'worker',
      packages: [],
      files: [],
      units: [],
      firstBoot: [],
      authorizedKeys: [],
      passwordLogin: false,
      disk: { size: 2 * 2 ** 30 },
      outputs: ['qcow2'],
    });
    expect(spec.targets.local).toEqual({ type: 'qemu', host: 'local', accel: 'auto', memory: 2 ** 30, cpus: 2, network: 'user' });
    expect(spec.fleets.workers).toEqual({
      image: 'worker',
      target: 'local',
      replicas: 1,
      rollout: { maxSurge: 1, maxUnavailable: 0, failureThreshold: 1, batchSize: 50 },
      healthCheck: { type: 'readiness', timeout: 300_000, interval: 5_000, retries: 3 },
    });
    expect(spec.schedules.nightly).toEqual({ cron: '0 3 * * *', timezone: 'UTC', action: 'rebuildHerd', fleets: ['workers'], paused: false });
  });

  test('is deep-frozen', () => {
    expect(Object.isFrozen(spec)).toBe(true);
    expect(Object.isFrozen(spec.images.worker.outputs)).toBe(true);
    expect(Object.isFrozen(spec.fleets.workers.healthCheck)).toBe(true);
    expect(() => {
      (spec.images.worker.outputs as string[]).push('raw');
    }).toThrow(TypeError);
  });

  test('base packages are added to the defaults; a pinned default replaces it', () => {
    const pinned = parseSpec(`${HEAD}base: { packages: [curl, "zstd=1.5.4+dfsg2-5"] }\nimages: { w: {} }\n`, 'k.yaml');
    expect(pinned.base.packages).toEqual([...DEFAULT_BASE_PACKAGES.filter((p) => p !== 'zstd'), 'curl', 'zstd=1.5.4+dfsg2-5']);
  });

  test('parsing twice gives independent objects (defaults are not shared)', () => {
    const again = parseSpec(`${HEAD}images: { worker: {} }\n`, 'kubedos.yaml');
    expect(again.images.worker.files).not.toBe(spec.images.worker.files);
  });
});

describe('payload sources', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kubedos-spec-'));
  mkdirSync(path.join(dir, 'payload'));
  writeFileSync(path.join(dir, 'payload', 'motd'), 'hello\n');
  const text = `${HEAD}images:\n  worker:\n    files:\n      - { path: /etc/motd, source: payload/motd }\n      - { path: /etc/missing, source: payload/missing }\n`;

  test('missing source files are reported relative to the spec directory', () => {
    writeFileSync(path.join(dir, 'kubedos.yaml'), text);
    return expect(loadIssues(path.join(dir, 'kubedos.yaml'))).resolves.toEqual([
      expect.objectContaining({ path: 'images.worker.files[1].source', message: expect.stringContaining(path.join(dir, 'payload', 'missing')) as unknown }),
    ]);
  });

  test('sources resolve to absolute paths with their sha256', async () => {
    writeFileSync(path.join(dir, 'ok.yaml'), text.replace(/\n {6}- \{ path: \/etc\/missing.*\n/, '\n'));
    const spec = await loadSpec(path.join(dir, 'ok.yaml'));
    expect(spec.images.worker.files[0]).toEqual({
      path: '/etc/motd',
      source: path.join(dir, 'payload', 'motd'),
      sourceSha256: '5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03',
      mode: '0644',
      owner: 'root:root',
    });
  });

  test('content and source together, or neither, are refused', () => {
    const issues = parseIssues(`${HEAD}images:\n  w:\n    files:\n      - { path: /a, content: x, source: y }\n      - { path: /b }\n`);
    expect(issues.map((i) => i.path)).toEqual(['images.w.files[0]', 'images.w.files[1]']);
    expect(issues[0].message).toMatch(/exactly one of content .* or source/);
  });
});

describe('loadSpec', () => {
  test('a missing file is a KubedosError with a hint, not a SpecError', async () => {
    const error = await loadSpec(path.join(tmpdir(), 'no-such-dir', 'kubedos.yaml')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KubedosError);
    expect(error).not.toBeInstanceOf(SpecError);
    expect((error as KubedosError).hint).toMatch(/examples\/quickstart/);
  });
});
