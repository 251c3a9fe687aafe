/** Canonical JSON and the spec digest: the cache key must not move unless the platform does. */
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { canonicalJson, loadSpec, parseSpec, specDigest } from '../../src/platform';

describe('canonicalJson', () => {
  test('sorts keys at every depth, keeps array order, drops undefined members', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, 1], c: 'x' }, u: undefined })).toBe('{"a":{"c":"x","d":[3,1]},"b":1}');
  });

  test('refuses values JSON cannot represent faithfully', () => {
    expect(() => canonicalJson({ a: Number.NaN })).toThrow(/non-finite number at \.a/);
    expect(() => canonicalJson({ f: () => 1 })).toThrow(/cannot encode a function/);
  });
});

const ORDERED = `
apiVersion: kubedos.dev/v1alpha1
kind: Platform
metadata: { name: digest }
images:
  worker: { role: worker, outputs: [qcow2], disk: { size: 2GiB } }
  master: { outputs: [raw] }
targets:
  local: { type: qemu, accel: tcg }
fleets:
  workers: { image: worker, target: local, replicas: 2 }
  masters: { image: master, target: local }
schedules:
  nightly: { cron: "0 3 * * *" }
`;

const REORDERED = `
kind: Platform
schedules:
  nightly: { cron: "0 3 * * *" }
fleets:
  masters: { target: local, image: master }
  workers: { replicas: 2, target: local, image: worker }
targets:
  local: { accel: tcg, type: qemu }
images:
  master: { outputs: [raw] }
  worker: { disk: { size: 2GiB }, outputs: [qcow2], role: worker }
metadata: { name: digest }
apiVersion: kubedos.dev/v1alpha1
`;

describe('specDigest', () => {
  const digest = (text: string) => specDigest(parseSpec(text, 'kubedos.yaml'));

  test('is a hex sha256', () => {
    expect(digest(ORDERED)).toMatch(/^[0-9a-f]{64}$/);
  });

  test('is stable under key reordering, including the default schedule fleets', () => {
    expect(digest(REORDERED)).toBe(digest(ORDERED));
  });

  test('changes when anything that matters changes', () => {
    expect(digest(ORDERED.replace('replicas: 2', 'replicas: 3'))).not.toBe(digest(ORDERED));
    expect(digest(ORDERED.replace('accel: tcg', 'accel: kvm'))).not.toBe(digest(ORDERED));
  });

  test('does not change when a default is written out explicitly', () => {
    expect(digest(ORDERED.replace('accel: tcg', 'accel: tcg, cpus: 2, memory: 1GiB'))).toBe(digest(ORDERED));
  });

  describe('payload sources', () => {
    function checkout(content: string): string {
      const dir = mkdtempSync(path.join(tmpdir(), 'kubedos-digest-'));
      mkdirSync(path.join(dir, 'files'));
      writeFileSync(path.join(dir, 'files', 'motd'), content);
      writeFileSync(
        path.join(dir, 'kubedos.yaml'),
        ORDERED.replace('role: worker,', 'role: worker, files: [{ path: /etc/motd, source: files/motd }],'),
      );
      return dir;
    }

    test('the same spec in two checkouts has one digest', async () => {
      const [a, b] = await Promise.all([loadSpec(checkout('hello\n')), loadSpec(checkout('hello\n'))]);
      expect(a.images.worker.files[0].source).not.toBe(b.images.worker.files[0].source);
      expect(specDigest(a)).toBe(specDigest(b));
    });

    test('editing a payload file changes the digest', async () => {
      const [a, b] = await Promise.all([loadSpec(checkout('hello\n')), loadSpec(checkout('goodbye\n'))]);
      expect(specDigest(a)).not.toBe(specDigest(b));
    });
  });
});
