/**
 * The bare-metal driver's Redfish side against OpenStack's real Redfish emulator, sushy-tools,
 * with its fake driver (no VMs: power changes land 1-11 s after they are asked for, as on a slow
 * BMC), over TLS with basic authentication, on loopback:
 *
 * - the client: the pinned certificate, a CA, insecure; session auth falls back to basic on a BMC
 *   without a SessionService; a wrong password and a wrong certificate are clear, non-retryable
 *   errors, and with a wrong certificate not one HTTP request reaches the BMC;
 * - `BootSourceOverrideEnabled: Once` is stored as Continuous by sushy, and clearing it falls back;
 * - leases: two drivers (two workers) racing for a two-machine inventory get distinct machines,
 *   the third node is refused, a destroyed node's machine is taken again;
 * - the whole virtual-media sequence (installer inserted and fetched from the boot server, boot
 *   Cd, power on; power off after the install; cidata inserted, boot Hdd, power on; up when the
 *   node's SSH port answers; media ejected, seed deleted, job closed), with the worker "restarted"
 *   (a new driver) in the middle.
 */
import { mkdtempSync, promises as fs, readFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BmcAuthError, BmcCertificateError, InventoryExhaustedError } from '../../src/errors';
import { freePort } from '../../src/exec/ports';
import { grubConfig, isoBootEntries, isolinuxConfig } from '../../src/foundry/formats/iso';
import { xorrisoDataIso } from '../../src/foundry/tools/xorriso';
import { sha256OfFile } from '../../src/store/transfer';
import { BaremetalDriver, INSTALLER_FILE } from '../../src/targets/baremetal/driver';
import type { BaremetalTargetSpec } from '../../src/targets/baremetal/index';
import { BmcMachine } from '../../src/targets/baremetal/machine';
import { RedfishClient, type BmcEndpoint } from '../../src/targets/baremetal/redfish';
import { generateIdentity } from '../../src/targets/identity';
import { makeCert, startSushy, type Cert, type Sushy } from '../support/sushy';

jest.setTimeout(5 * 60_000);

const SYSTEMS = [
  { uuid: '5d0c3a1e-0000-4000-8000-000000000001', name: 'm1', power_state: 'Off' as const, nics: [{ mac: '52:54:00:aa:00:01' }] },
  { uuid: '5d0c3a1e-0000-4000-8000-000000000002', name: 'm2', power_state: 'Off' as const, nics: [{ mac: '52:54:00:aa:00:02' }] },
];
const USER = 'kubedos';
const PASSWORD = 'correct horse';
const PASSWORD_ENV = `KD_TEST_BMC_PASSWORD_${process.pid}`;
const WRONG_ENV = `KD_TEST_BMC_WRONG_${process.pid}`;

let tmp: string;
let cert: Cert;
let ca: Cert;
let caSigned: Cert;
let sushy: Sushy;
let sushyCa: Sushy;
let fakeIso: string;
const drivers: BaremetalDriver[] = [];

beforeAll(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'kubedos-bm-redfish-'));
  process.env[PASSWORD_ENV] = PASSWORD;
  process.env[WRONG_ENV] = 'battery staple';
  cert = await makeCert(path.join(tmp, 'pki'), 'bmc', '127.0.0.1');
  ca = await makeCert(path.join(tmp, 'pki'), 'lab-ca', '127.0.0.1');
  caSigned = await makeCert(path.join(tmp, 'pki'), 'bmc-signed', '127.0.0.1', ca);
  const [port, portCa] = [await freePort(), await freePort()];
  [sushy, sushyCa] = await Promise.all([
    startSushy({ dir: path.join(tmp, 'sushy'), host: '127.0.0.1', port, cert, users: [{ user: USER, password: PASSWORD }], fake: SYSTEMS }),
    startSushy({ dir: path.join(tmp, 'sushy-ca'), host: '127.0.0.1', port: portCa, cert: caSigned, users: [{ user: USER, password: PASSWORD }], fake: SYSTEMS.slice(0, 1) }),
  ]);
  // A small "installer" ISO with the iso format's two menus (the driver repacks them to install).
  const tree = path.join(tmp, 'iso-tree');
  const entries = isoBootEntries({ name: 'fake' }, 'KUBEDOS_FAKE');
  await fs.mkdir(path.join(tree, 'isolinux'), { recursive: true });
  await fs.mkdir(path.join(tree, 'boot', 'grub'), { recursive: true });
  await fs.writeFile(path.join(tree, 'isolinux', 'isolinux.cfg'), isolinuxConfig(entries));
  await fs.writeFile(path.join(tree, 'boot', 'grub', 'grub.cfg'), grubConfig(entries));
  fakeIso = path.join(tmp, 'fake.iso');
  await xorrisoDataIso({ out: fakeIso, volid: 'KUBEDOS_FAKE', sourceDir: tree }, 0);
});

afterAll(async () => {
  for (const d of drivers) await d.close().catch(() => undefined);
  await sushy?.stop();
  await sushyCa?.stop();
  delete process.env[PASSWORD_ENV];
  delete process.env[WRONG_ENV];
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

function endpoint(over: Partial<BmcEndpoint> = {}): BmcEndpoint {
  return { machine: 'm1', url: sushy.url, tls: { fingerprint: cert.fingerprint }, username: USER, password: PASSWORD, ...over };
}

const requestLines = (s: Sushy) => s.log().split('\n').filter((l) => /"(GET|POST|PATCH|DELETE) \//.test(l)).length;

describe('the Redfish client against sushy-tools (fake driver)', () => {
  test('a pinned certificate and basic authentication (sushy has no SessionService): systems, power, NICs', async () => {
    const client = new RedfishClient(endpoint());
    const m = new BmcMachine('m1', client, SYSTEMS[0]!.uuid);
    const system = await m.resource();
    expect(system).toMatchObject({ Id: SYSTEMS[0]!.uuid, PowerState: 'Off' });
    const nics = await client.get(`/redfish/v1/Systems/${SYSTEMS[0]!.uuid}/EthernetInterfaces`);
    expect(JSON.stringify(nics)).toContain('52:54:00:aa:00:01');
    // Without `system`, a BMC with two systems is refused with what to write.
    await expect(new BmcMachine('m1', client).system()).rejects.toThrow(/the BMC manages 2 systems .*name this machine's with `system`/);
    await client.close();
  });

  test('BootSourceOverrideEnabled: Once is stored as Continuous; clearing it falls back to a boot from disk', async () => {
    const m = new BmcMachine('m2', new RedfishClient(endpoint({ machine: 'm2' })), SYSTEMS[1]!.uuid);
    await m.bootFrom('Pxe');
    expect(await m.bootOverride()).toEqual({ enabled: 'Continuous', target: 'Pxe' });
    // sushy refuses `Disabled` alone (400): the override is set to the disk instead.
    expect(await m.clearBootOverride()).toBe('disk');
    expect(await m.bootOverride()).toEqual({ enabled: 'Continuous', target: 'Hdd' });
  });

  test('a wrong password: BmcAuthError, not retryable, naming the user', async () => {
    const err = await new RedfishClient(endpoint({ password: 'battery staple' })).get('/redfish/v1/Systems').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BmcAuthError);
    expect(err).toMatchObject({ retryable: false, status: 401, user: USER, message: expect.stringContaining(`refused user "${USER}" (HTTP 401)`) });
  });

  test('a certificate that is not the pinned one: BmcCertificateError, and not one request reaches the BMC', async () => {
    const before = requestLines(sushy);
    const err = await new RedfishClient(endpoint({ tls: { fingerprint: caSigned.fingerprint } })).get('/redfish/v1/Systems').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BmcCertificateError);
    expect(err).toMatchObject({ retryable: false, presented: cert.fingerprint });
    expect((err as Error).message).toContain('nothing was sent to it');
    await sleep(300);
    expect(requestLines(sushy)).toBe(before);
  });

  test('a CA file: a certificate it signed for the address is accepted, one it did not sign is refused', async () => {
    const ok = await new RedfishClient(endpoint({ url: sushyCa.url, tls: { ca: ca.cert } })).get('/redfish/v1/Systems');
    expect((ok.Members as unknown[]).length).toBe(1);
    const err = await new RedfishClient(endpoint({ url: sushy.url, tls: { ca: ca.cert } })).get('/redfish/v1/Systems').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BmcCertificateError);
    expect((err as Error).message).toMatch(/is not signed by/);
  });

  test('insecure, only when asked: accepted, with a warning', async () => {
    const ok = await new RedfishClient(endpoint({ tls: { insecure: true } })).get('/redfish/v1/Systems');
    expect((ok.Members as unknown[]).length).toBe(2);
  });
});

function spec(over: Partial<BaremetalTargetSpec> = {}, bootPort = 0): BaremetalTargetSpec {
  return {
    type: 'baremetal',
    provisioning: 'virtual-media',
    credentials: { username: USER, passwordEnv: PASSWORD_ENV },
    tls: { fingerprint: cert.fingerprint },
    bootServer: { url: `http://127.0.0.1:${bootPort}`, listen: '127.0.0.1' },
    leaseDir: path.join(tmp, 'leases'),
    wipe: 'none',
    machines: SYSTEMS.map((s, i) => ({ name: s.name, bmc: sushy.url, system: s.uuid, mac: s.nics[0]!.mac, address: `127.0.0.${i + 2}` })),
    ...over,
  } as BaremetalTargetSpec;
}

function driver(stateName: string, s: BaremetalTargetSpec, installOffGraceMs = 20_000, target = 'rack'): BaremetalDriver {
  const d = new BaremetalDriver(target, s, { stateDir: path.join(tmp, 'state', stateName) }, { installOffGraceMs });
  drivers.push(d);
  return d;
}

const labels = (fleet: string) => ({ platform: 'p', fleet, generation: 1, image: 'fake', imageDigest: 'e'.repeat(64) });

async function prepared(d: BaremetalDriver) {
  const { sha256, size } = await sha256OfFile(fakeIso);
  return d.prepare({ name: 'fake', digest: 'e'.repeat(64), artifact: { format: 'iso', sha256, size, path: fakeIso } }, {});
}

describe('leases: a machine belongs to one node', () => {
  test('two targets listing the same two machines, on two workers, racing: distinct machines, the third node refused; a destroyed node\'s machine is taken again', async () => {
    const s = spec();
    const [a, b] = [driver('worker-a', s, 20_000, 'rack-a'), driver('worker-b', s, 20_000, 'rack-b')];
    const [pa, pb] = await Promise.all([prepared(a), prepared(b)]);
    const create = (d: BaremetalDriver, image: typeof pa, nodeId: string, fleet: string) =>
      d.create({ nodeId, labels: labels(fleet), image, identity: generateIdentity(nodeId), authorizedKeys: [] }, {}).then(
        () => 'ok',
        (e: unknown) => e,
      );
    const results = await Promise.all([create(a, pa, 'p-web-0000', 'web'), create(b, pb, 'p-db-0000', 'db'), create(a, pa, 'p-web-0001', 'web')]);
    expect(results.filter((r) => r === 'ok')).toHaveLength(2);
    const refused = results.find((r) => r !== 'ok');
    expect(refused).toBeInstanceOf(InventoryExhaustedError);
    expect((refused as Error).message).toMatch(/all 2 machine\(s\) of the inventory are taken \(m1: rack-[ab]\/p-.*, m2: rack-[ab]\/p-/);
    const states = [...(await Promise.all(['p-web-0000', 'p-db-0000', 'p-web-0001'].map((id) => a.nodeState(id).then((st) => st ?? b.nodeState(id)))))].filter((st) => st !== undefined);
    expect(new Set(states.map((st) => st!.machine))).toEqual(new Set(['m1', 'm2']));
    const leases = (await fs.readdir(path.join(tmp, 'leases'))).sort();
    expect(leases).toEqual(['52-54-00-aa-00-01.lease', '52-54-00-aa-00-02.lease']);
    // A retried create is the same node on the same machine.
    const again = states[0]!;
    const owner = (await a.nodeState(again.nodeId)) ? a : b;
    expect(await owner.create({ nodeId: again.nodeId, labels: again.labels, image: owner === a ? pa : pb, identity: generateIdentity('x'), authorizedKeys: [] }, {})).toEqual(again.identity);
    // Destroyed: the machine goes back, and the refused node gets it.
    await owner.destroy(again.nodeId, {});
    // The owner may hold the other node too (when the race refused the other target's node).
    expect((await owner.list({}, {})).map((n) => n.nodeId)).not.toContain(again.nodeId);
    expect(await fs.readdir(path.join(tmp, 'leases'))).toHaveLength(1);
    const loser = ['p-web-0000', 'p-db-0000', 'p-web-0001'].find((id) => !states.some((st) => st!.nodeId === id))!;
    await a.create({ nodeId: loser, labels: labels('web'), image: pa, identity: generateIdentity(loser), authorizedKeys: [] }, {});
    expect((await a.nodeState(loser))!.machine).toBe(again.machine);
    for (const id of ['p-web-0000', 'p-db-0000', 'p-web-0001']) {
      await a.destroy(id, {});
      await b.destroy(id, {});
    }
    expect(await fs.readdir(path.join(tmp, 'leases'))).toEqual([]);
  });

  test('a wrong BMC password or certificate fails create at once, non-retryable, and leaves the machine free', async () => {
    for (const [over, type] of [
      [{ credentials: { username: USER, passwordEnv: WRONG_ENV } }, BmcAuthError],
      [{ tls: { fingerprint: caSigned.fingerprint } }, BmcCertificateError],
    ] as const) {
      const leaseDir = path.join(tmp, `leases-${type.name}`);
      const d = driver(`bad-${type.name}`, spec({ ...(over as Partial<BaremetalTargetSpec>), leaseDir }));
      const image = await prepared(d);
      const err = await d.create({ nodeId: 'p-bad-0000', labels: labels('bad'), image, identity: generateIdentity('bad'), authorizedKeys: [] }, {}).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(type);
      expect((err as { retryable: boolean }).retryable).toBe(false);
      expect(await fs.readdir(leaseDir).catch(() => [])).toEqual([]);
      expect(await d.list({}, {})).toEqual([]);
    }
  });
});

/** The HTTP status of a GET (the boot server's certificate is self-signed). */
function statusOf(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    https.get(url, { rejectUnauthorized: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).on('error', reject);
  });
}

test('the virtual-media sequence on a fake machine, the boot server on HTTPS: installer, power-off, cidata and disk, up; resumed by a new driver midway', async () => {
  const bootPort = await freePort();
  const serverCert = await makeCert(path.join(tmp, 'pki'), 'boot-server', '127.0.0.1');
  const s = spec({ machines: spec().machines.slice(0, 1), bootServer: { url: `https://127.0.0.1:${bootPort}`, listen: '127.0.0.1', tls: { cert: serverCert.cert, key: serverCert.key } } }, bootPort);
  const first = driver('vm', s, 15_000);
  const image = await prepared(first);
  const identity = generateIdentity('web-0000');
  await first.create({ nodeId: 'p-web-0000', labels: labels('web'), image, identity, authorizedKeys: [] }, {});
  const bmc = new BmcMachine('m1', new RedfishClient(endpoint()), SYSTEMS[0]!.uuid);
  await first.start('p-web-0000', {});
  let state = (await first.nodeState('p-web-0000'))!;
  expect(state.phase).toBe('installing');
  // sushy fetched the installer from the boot server: the job's URL, the repacked ISO's bytes.
  const cd = await bmc.client.get(`/redfish/v1/Systems/${SYSTEMS[0]!.uuid}/VirtualMedia/Cd`);
  expect(cd).toMatchObject({ Image: `https://127.0.0.1:${bootPort}/j/${state.token}/${INSTALLER_FILE}`, Inserted: true });
  expect(await bmc.bootOverride()).toEqual({ enabled: 'Continuous', target: 'Cd' });
  const installer = readFileSync(state.image.installer!, 'latin1');
  expect(installer).toContain('default install');
  expect(installer).toContain('set default=install');
  // A second start (a retried activity) changes nothing.
  await first.start('p-web-0000', {});
  // The machine comes on (after sushy's delay): seen running.
  for (let i = 0; i < 40 && !(await first.nodeState('p-web-0000'))!.sawOn; i++) {
    expect(await first.readiness('p-web-0000', {})).toBe(false);
    await sleep(500);
  }
  expect((await first.nodeState('p-web-0000'))!.sawOn).toBe(true);
  await expect(first.address('p-web-0000', {})).rejects.toThrow(/installing the image/);
  await first.close();

  // The "installer" powers the machine off; a new driver (a restarted worker) carries on.
  await bmc.reset('ForceOff');
  const second = driver('vm', s, 15_000);
  const node = net.createServer((c) => {
    c.on('error', () => undefined); // the probe hangs up at once
    c.end('SSH-2.0-OpenSSH_9.2p1 fake\r\n');
  });
  await new Promise<void>((r) => node.listen(22, '127.0.0.2', r));
  const images = new Set<string>();
  try {
    const deadline = Date.now() + 120_000;
    while (!(await second.readiness('p-web-0000', {}))) {
      if (Date.now() > deadline) throw new Error(`not up: ${JSON.stringify(await second.nodeState('p-web-0000'))}`);
      images.add((await bmc.media()).image);
      await sleep(500);
    }
  } finally {
    node.close();
  }
  state = (await second.nodeState('p-web-0000'))!;
  expect(state.events.map((e) => e.event)).toEqual([
    'machine m1 leased',
    'starting',
    'installer inserted, boot Cd, power on',
    'powered on',
    'installer running',
    'installer done (powered off)',
    'installer ejected, cidata inserted, boot Hdd, power on',
    'up at 127.0.0.2; seed removed, boot override set to disk',
  ]);
  expect(await second.address('p-web-0000', {})).toEqual({ host: '127.0.0.2', ports: { 22: 22 } });
  // Up: the cidata ISO is ejected and deleted, the job closed (its URLs answer 404 now).
  expect((await bmc.media()).inserted).toBe(false);
  expect(await fs.readdir(path.join(tmp, 'state', 'vm', 'seeds'))).toEqual([]);
  expect(await statusOf(`https://127.0.0.1:${bootPort}/ipxe`)).toBe(200);
  expect(await statusOf(`https://127.0.0.1:${bootPort}/j/${state.token}/${INSTALLER_FILE}`)).toBe(404);
  // In between, the virtual CD held the node's cidata ISO, which sushy fetched from the boot server.
  expect(images).toContain(`https://127.0.0.1:${bootPort}/j/${state.token}/cidata.iso`);

  await second.destroy('p-web-0000', {});
  expect(await bmc.power()).not.toBe('On');
  expect(await second.list({}, {})).toEqual([]);
});
