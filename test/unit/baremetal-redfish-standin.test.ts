/**
 * The Redfish client and the bare-metal driver against a Redfish STAND-IN
 * (test/support/redfish-standin) for what sushy-tools, the real emulator the other bare-metal tests
 * use, does not implement: sessions (login, expiry, logout, refusal), task monitors, and
 * Drive.SecureErase (the driver's `wipe: secure-erase`).
 */
import { mkdtempSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BmcAuthError, RedfishError } from '../../src/errors';
import { BaremetalDriver } from '../../src/targets/baremetal/driver';
import type { BaremetalTargetSpec } from '../../src/targets/baremetal/index';
import { BmcMachine } from '../../src/targets/baremetal/machine';
import { RedfishClient, type BmcEndpoint } from '../../src/targets/baremetal/redfish';
import { generateIdentity } from '../../src/targets/identity';
import { RedfishStandin, type StandinOptions } from '../support/redfish-standin';
import { makeCert, type Cert } from '../support/sushy';

let tmp: string;
let cert: Cert;
const standins: RedfishStandin[] = [];

beforeAll(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'kubedos-bm-standin-'));
  cert = await makeCert(path.join(tmp, 'pki'), 'bmc', '127.0.0.1');
});

afterAll(async () => {
  for (const s of standins) await s.stop();
  await fs.rm(tmp, { recursive: true, force: true });
});

async function standin(o: Partial<StandinOptions> = {}): Promise<RedfishStandin> {
  const s = new RedfishStandin({ cert: cert.cert, key: cert.key, user: 'admin', password: 'pw', ...o });
  await s.start();
  standins.push(s);
  return s;
}

const endpoint = (s: RedfishStandin, over: Partial<BmcEndpoint> = {}): BmcEndpoint => ({ machine: 'r1-u07', url: s.url, tls: { fingerprint: cert.fingerprint }, username: 'admin', password: 'pw', ...over });

test('stand-in: a session is opened from the service root, its token used, and closed at the end', async () => {
  const s = await standin();
  const client = new RedfishClient(endpoint(s));
  expect((await client.get('/redfish/v1/Systems/1')).PowerState).toBe('Off');
  await client.get('/redfish/v1/Systems');
  await client.close();
  expect(s.requests.map((r) => `${r.method} ${r.path} ${r.auth}`)).toEqual([
    'GET /redfish/v1 none',
    'POST /redfish/v1/SessionService/Sessions none',
    'GET /redfish/v1/Systems/1 session',
    'GET /redfish/v1/Systems session',
    `DELETE /redfish/v1/SessionService/Sessions/${[...s.requests].reverse()[0]!.path.split('/').pop()} session`,
  ]);
  expect(s.requests[1]!.body).toEqual({ UserName: 'admin', Password: '***' });
  expect(s.sessions.size).toBe(0);
});

test('stand-in: an expired session is opened again, once; a refused login is BmcAuthError', async () => {
  const s = await standin({ sessionRequests: 1 });
  const client = new RedfishClient(endpoint(s));
  await client.get('/redfish/v1/Systems');
  await client.get('/redfish/v1/Systems'); // the token has expired: 401, log in again, retry
  expect(s.requests.filter((r) => r.path.endsWith('/Sessions')).length).toBe(2);
  expect(s.requests.filter((r) => r.auth === 'bad-session')).toHaveLength(1);
  const err = await new RedfishClient(endpoint(s, { password: 'nope' })).get('/redfish/v1/Systems').catch((e: unknown) => e);
  expect(err).toBeInstanceOf(BmcAuthError);
  expect(err).toMatchObject({ retryable: false, status: 401 });
});

test('stand-in: a BMC that refuses sessions (405) is used with basic authentication', async () => {
  const s = await standin({ sessionStatus: 405 });
  const client = new RedfishClient(endpoint(s));
  await client.get('/redfish/v1/Systems');
  expect(s.requests.at(-1)!.auth).toBe('basic');
});

test('stand-in: task monitors are followed to the end (Retry-After honoured); a task in Exception is a RedfishError with its messages', async () => {
  const s = await standin({ taskPolls: 3, failingDrives: ['1'] });
  const m = new BmcMachine('r1-u07', new RedfishClient(endpoint(s), { taskPollMs: 100 }));
  const steps: string[] = [];
  const err = await m.secureErase({ progress: (p) => steps.push(p.step) }).catch((e: unknown) => e);
  expect(s.erased).toEqual(['0']);
  expect(err).toBeInstanceOf(RedfishError);
  expect((err as Error).message).toMatch(/Drive\.SecureErase → 200: its task \/redfish\/v1\/TaskService\/TaskMonitors\/\w+ ended Exception \(Critical\): drive 1 is write-protected/);
  expect(steps.some((st) => /task \/redfish\/v1\/TaskService\/TaskMonitors\/\w+ Running 50%/.test(st))).toBe(true);
  // Polled at the BMC's pace: 3 monitor requests per drive.
  expect(s.requests.filter((r) => r.path.includes('/TaskMonitors/')).length).toBe(6);
});

test('stand-in: destroy with wipe: secure-erase powers off, ejects and erases every drive before the machine is given back', async () => {
  const s = await standin({ taskPolls: 2 });
  const spec = {
    type: 'baremetal',
    provisioning: 'virtual-media',
    credentials: { username: 'admin', passwordFile: path.join(tmp, 'bmc-password') },
    tls: { fingerprint: cert.fingerprint },
    bootServer: { url: 'http://127.0.0.1:0', listen: '127.0.0.1' },
    leaseDir: path.join(tmp, 'leases'),
    wipe: 'secure-erase',
    machines: [{ name: 'r1-u07', bmc: s.url, mac: '52:54:00:12:34:56', address: '127.0.0.9' }],
  } as BaremetalTargetSpec;
  await fs.writeFile(path.join(tmp, 'bmc-password'), 'pw\n', { mode: 0o600 });
  // A node that was started (the stand-in's machine was given an installer and powered on).
  const dir = path.join(tmp, 'state');
  const driver = new BaremetalDriver('rack', spec, { stateDir: dir });
  await fs.mkdir(path.join(dir, 'images'), { recursive: true });
  const installer = path.join(dir, 'images', `${'a'.repeat(64)}.install-first-disk.iso`);
  await fs.writeFile(installer, 'iso');
  await driver.create({ nodeId: 'p-w-0000', labels: { platform: 'p', fleet: 'w', generation: 1, image: 'i', imageDigest: 'a'.repeat(64) }, image: { digest: 'a'.repeat(64), location: path.join(dir, 'images', `${'a'.repeat(64)}.iso`) }, identity: generateIdentity('w-0000'), authorizedKeys: [] }, {});
  await driver.start('p-w-0000', {});
  expect(s.system).toMatchObject({ power: 'On', cd: { Inserted: true }, boot: { BootSourceOverrideTarget: 'Cd', BootSourceOverrideEnabled: 'Once' } });
  await driver.destroy('p-w-0000', {});
  expect(s.system).toMatchObject({ power: 'Off', cd: { Inserted: false, Image: '' } });
  expect(s.erased).toEqual(['0', '1']);
  expect(await fs.readdir(path.join(tmp, 'leases'))).toEqual([]);
  expect(await driver.list({}, {})).toEqual([]);
  await driver.close();
});
