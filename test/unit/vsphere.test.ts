/**
 * The vsphere target's pure parts: its spec (what a vCenter user writes, what is refused and why),
 * the records it writes on VMs, govc's JSON stream, references resolved on the worker, and the
 * concurrency bound. The driver itself is tested against vcsim (test/e2e/vsphere*.test.ts).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { SpecError, VsphereCredentialsError } from '../../src/errors';
import { parseSpec } from '../../src/platform';
import { generateIdentity, publicPart } from '../../src/targets/identity';
import { datastorePath } from '../../src/targets/vsphere/driver';
import { parseJsonStream, resolveRef, Slots, thumbprintHost } from '../../src/targets/vsphere/govc';
import { cloneName, encodeRecord, identityOf, imageRecord, importName, nodeRecord, templateName } from '../../src/targets/vsphere/records';

const THUMB = '4C:3D:58:C2:80:EA:08:A0:67:53:79:A8:D5:3B:7C:77:6A:8A:40:EE:D1:80:4E:17:26:39:5B:D7:07:23:D4:D8';

function doc(target: Record<string, unknown>) {
  return {
    apiVersion: 'kubedos.dev/v1alpha1',
    kind: 'Platform',
    metadata: { name: 'p' },
    images: { web: { outputs: ['ova'] } },
    targets: { vc: { type: 'vsphere', url: 'https://vcenter.example/sdk', datastore: 'ds1', tls: { thumbprint: THUMB }, ...target } },
    fleets: { web: { image: 'web', target: 'vc', replicas: 2 } },
  };
}

function problems(target: Record<string, unknown>): string[] {
  try {
    parseSpec(stringify(doc(target)), 'kubedos.yaml');
  } catch (err) {
    if (err instanceof SpecError) return err.issues.map((i) => `${i.path}: ${i.message}`);
    throw err;
  }
  return [];
}

describe('the vsphere target spec', () => {
  test('what a vCenter user writes, with its defaults', () => {
    const spec = parseSpec(stringify(doc({ cluster: 'compute' })), 'kubedos.yaml');
    expect(spec.targets.vc).toEqual({
      type: 'vsphere',
      url: 'https://vcenter.example/sdk',
      credentials: { username: { env: 'GOVC_USERNAME' }, password: { env: 'GOVC_PASSWORD' } },
      tls: { thumbprint: THUMB },
      cluster: 'compute',
      datastore: 'ds1',
      folder: 'kubedos',
      network: 'VM Network',
      clone: 'linked',
      concurrency: 4,
      memory: 2 * 1024 ** 3,
      cpus: 2,
    });
    expect(problems({ url: { env: 'VSPHERE_URL' }, tls: { thumbprint: { env: 'VSPHERE_THUMBPRINT' } }, credentials: { username: 'kubedos@vsphere.local', password: { file: '/run/secrets/vc' } } })).toEqual([]);
    expect(problems({ tls: { caFile: '/etc/kubedos/vc-ca.pem' }, host: 'esx1.lab', resourcePool: 'kubedos/web', folder: 'teams/kubedos', clone: 'full' })).toEqual([]);
    expect(problems({ tls: { insecure: true } })).toEqual([]);
  });

  test('a secret is never written in the spec, and the URL carries none', () => {
    expect(problems({ credentials: { password: 'hunter2' } })).toEqual([expect.stringMatching(/^targets\.vc\.credentials\.password: a secret is never written in the spec: name where the worker reads it, \{env: NAME\} or \{file: \/path\}/)]);
    expect(problems({ url: 'https://admin:hunter2@vcenter.example/sdk' })).toEqual([expect.stringMatching(/^targets\.vc\.url: .*must not carry credentials/)]);
    expect(problems({ credentials: { password: { env: 'hunter2 x' } } })).toEqual([expect.stringMatching(/credentials\.password/)]);
  });

  test('TLS is chosen, never defaulted: exactly one of thumbprint, caFile, insecure', () => {
    expect(problems({ tls: {} })).toEqual([expect.stringMatching(/^targets\.vc\.tls: tls: pin the server certificate with thumbprint/)]);
    expect(problems({ tls: undefined })).toEqual([expect.stringMatching(/^targets\.vc\.tls: /)]);
    expect(problems({ tls: { thumbprint: THUMB, insecure: true } })).toEqual(['targets.vc.tls: tls: set one of thumbprint, caFile or insecure, not thumbprint and insecure']);
    expect(problems({ tls: { insecure: false } })).toEqual([expect.stringMatching(/insecure can only be true/)]);
    expect(problems({ tls: { thumbprint: 'SHA256:abcdef' } })).toEqual([expect.stringMatching(/^targets\.vc\.tls\.thumbprint: .*invalid thumbprint "SHA256:abcdef"/)]);
    expect(problems({ url: 'http://vcenter.example/sdk' })).toEqual([expect.stringMatching(/over https only/)]);
  });

  test('inventory names and the rest of the shape are checked', () => {
    expect(problems({ datastore: 'a/../b', cluster: 'c/d' })).toEqual([expect.stringMatching(/^targets\.vc\.cluster: invalid cluster "c\/d"/)]);
    expect(problems({ folder: '/kubedos' })).toEqual([expect.stringMatching(/^targets\.vc\.folder: .*without a leading or trailing '\/'/)]);
    expect(problems({ resourcePool: 'kubedos' })).toEqual(['targets.vc.resourcePool: resourcePool needs cluster or host: it is a pool below their root pool']);
    expect(problems({ concurrency: 0, clone: 'instant' })).toEqual(['targets.vc.concurrency: must be at least 1, got 0', 'targets.vc.clone: unknown clone mode "instant"; expected one of linked, full']);
    expect(problems({ datastore: undefined })).toEqual([expect.stringMatching(/^targets\.vc\.datastore: /)]);
  });

  test('images for it must output ova', () => {
    const d = doc({});
    d.images.web.outputs = ['vmdk'];
    expect(() => parseSpec(stringify(d), 'kubedos.yaml')).toThrow(SpecError);
  });
});

describe('what the driver writes on VMs', () => {
  const labels = { platform: 'p', fleet: 'web', generation: 3, image: 'web', imageDigest: 'a'.repeat(64) };

  test('a node record round-trips; anything else in the annotation is not ours', () => {
    expect(nodeRecord(encodeRecord({ kubedos: 1, kind: 'node', nodeId: 'p-web-0001', labels }))).toEqual({ kubedos: 1, kind: 'node', nodeId: 'p-web-0001', labels });
    for (const text of ['', 'database, do not delete', '{"kubedos":1}', '{"kubedos":2,"kind":"node","nodeId":"x","labels":{}}', JSON.stringify({ kubedos: 1, kind: 'node', nodeId: 'x', labels: { ...labels, generation: '3' } }), '{not json']) {
      expect(nodeRecord(text)).toBeUndefined();
    }
    expect(imageRecord(encodeRecord({ kubedos: 1, kind: 'node', nodeId: 'p-web-0001', labels }))).toBeUndefined();
  });

  test('image records name their digest and importer; template and import names fit vSphere\'s 80 characters', () => {
    const record = { kubedos: 1 as const, kind: 'image' as const, sha256: 'b'.repeat(64), image: 'web', digest: 'c'.repeat(64), state: 'importing' as const, startedAt: 1, owner: 'host:1:abcd' };
    expect(imageRecord(encodeRecord(record))).toEqual(record);
    expect(imageRecord(encodeRecord({ ...record, sha256: 'short' }))).toBeUndefined();
    expect(imageRecord(encodeRecord({ ...record, state: 'done' as never }))).toBeUndefined();
    expect(templateName('b'.repeat(64))).toHaveLength(78);
    expect(importName('b'.repeat(64), 'deadbeef')).toBe(`kubedos-import-${'b'.repeat(16)}-deadbeef`);
    // A clone's reserved name is the node's alone, whatever the id's length.
    expect(cloneName('p-web-0001')).toMatch(/^kubedos-clone-[0-9a-f]{24}$/);
    expect(cloneName('p-web-0001')).not.toBe(cloneName('p-web-0002'));
    expect(cloneName('x'.repeat(80))).toHaveLength(38);
  });

  test('the public identity in extraConfig', () => {
    const identity = publicPart(generateIdentity('web-1'));
    expect(identityOf({ 'kubedos.identity': JSON.stringify(identity) })).toEqual(identity);
    expect(identityOf({ 'kubedos.identity': JSON.stringify({ ...identity, hostKeyPrivate: 'x' }) })).toEqual(identity);
    expect(identityOf({})).toBeUndefined();
    expect(identityOf({ 'kubedos.identity': '{"hostname":1}' })).toBeUndefined();
  });

  test('datastore paths', () => {
    expect(datastorePath('[LocalDS_0] kubedos-import-ab/disk-0.vmdk')).toEqual({ datastore: 'LocalDS_0', path: 'kubedos-import-ab/disk-0.vmdk' });
    expect(datastorePath('[shared ds 01] n/n.vmdk')).toEqual({ datastore: 'shared ds 01', path: 'n/n.vmdk' });
    expect(datastorePath('n/n.vmdk')).toBeUndefined();
  });
});

describe('govc plumbing', () => {
  test('JSON values one after another (object.collect, ls) parse as a list; braces in strings do not confuse it', () => {
    expect(parseJsonStream('{"a":1}\n{"b":"}{"}\n[1,2]\nnull\n"s"')).toEqual([{ a: 1 }, { b: '}{' }, [1, 2], null, 's']);
    expect(parseJsonStream('[{"name":"x"},{"name":"y"}]')).toEqual([{ name: 'x' }, { name: 'y' }]);
    expect(parseJsonStream('')).toEqual([]);
    expect(() => parseJsonStream('{"a":')).toThrow(/incomplete JSON/);
  });

  test('thumbprints are keyed by host:port, 443 by default', () => {
    expect(thumbprintHost(new URL('https://vc.example/sdk'))).toBe('vc.example:443');
    expect(thumbprintHost(new URL('https://127.0.0.1:8989/sdk'))).toBe('127.0.0.1:8989');
    expect(thumbprintHost(new URL('https://[::1]:8989/sdk'))).toBe('[::1]:8989');
  });

  test('references are read on the worker: an environment variable, a file (one trailing newline dropped), or a clear error', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'kubedos-vsphere-unit-'));
    try {
      process.env.KUBEDOS_TEST_REF = 's3cret';
      expect(await resolveRef({ env: 'KUBEDOS_TEST_REF' }, 'vc', 'credentials.password')).toBe('s3cret');
      delete process.env.KUBEDOS_TEST_REF;
      await expect(resolveRef({ env: 'KUBEDOS_TEST_REF' }, 'vc', 'credentials.password')).rejects.toThrow(new VsphereCredentialsError('vc', 'credentials.password: environment variable KUBEDOS_TEST_REF is not set on this worker'));
      writeFileSync(path.join(dir, 'pw'), 'pass word\n');
      expect(await resolveRef({ file: path.join(dir, 'pw') }, 'vc', 'credentials.password')).toBe('pass word');
      await expect(resolveRef({ file: path.join(dir, 'none') }, 'vc', 'credentials.password')).rejects.toThrow(/cannot read .*none: ENOENT/);
      writeFileSync(path.join(dir, 'empty'), '\n');
      await expect(resolveRef({ file: path.join(dir, 'empty') }, 'vc', 'credentials.password')).rejects.toThrow(/is empty/);
      expect(await resolveRef('kubedos', 'vc', 'credentials.username')).toBe('kubedos');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('slots bound how many calls run at once', async () => {
    const slots = new Slots(2);
    let active = 0;
    let peak = 0;
    await Promise.all(
      Array.from({ length: 7 }, async () => {
        const release = await slots.acquire();
        active++;
        peak = Math.max(peak, active);
        await new Promise((r) => setTimeout(r, 10));
        active--;
        release();
        release(); // twice is once
      }),
    );
    expect(peak).toBe(2);
    const [a, b] = [await slots.acquire(), await slots.acquire()];
    let third = false;
    const waiting = slots.acquire().then((r) => ((third = true), r));
    await new Promise((r) => setTimeout(r, 20));
    expect(third).toBe(false);
    a();
    (await waiting)();
    b();
    expect(third).toBe(true);
  });
});
