/**
 * A Redfish STAND-IN for what OpenStack's emulator (sushy-tools) does not implement: the
 * SessionService (login, X-Auth-Token, expiry, logout), task monitors (`202 Accepted` +
 * `Location`, polled until the task ends), and `Drive.SecureErase`. Everything else a driver
 * needs is here too, minimally (a system with power, boot override, reset, a virtual CD), so the
 * driver's real code runs against it end to end.
 *
 * It speaks the DMTF wire format (Redfish 1.x: ServiceRoot `Links.Sessions`, Session, Task with
 * TaskState/TaskStatus/Messages, error bodies `{error: {code, message, @Message.ExtendedInfo}}`)
 * and checks what it is sent: property names and types per the published schemas
 * (SessionService.v1 Session: UserName, Password strings; ComputerSystem.Reset: ResetType among
 * the allowable values; VirtualMedia.InsertMedia: Image string, Inserted/WriteProtected booleans),
 * answering 400 with `Base.1.x.PropertyValueTypeError` / `ActionParameterNotSupported` otherwise.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';

export interface StandinOptions {
  cert: string;
  key: string;
  user: string;
  password: string;
  /** A session token stops working after this many requests (the BMC's session timeout). */
  sessionRequests?: number;
  /** Answer session logins with this status instead (e.g. 405: a BMC without sessions). */
  sessionStatus?: number;
  /** Polls of a task monitor before the task ends. @default 2 */
  taskPolls?: number;
  /** Drives whose secure erase ends in Exception. */
  failingDrives?: string[];
}

export interface StandinRequest {
  method: string;
  path: string;
  auth: 'none' | 'basic' | 'session' | 'bad-session';
  body?: unknown;
}

const RESET_TYPES = ['On', 'ForceOff', 'GracefulShutdown', 'GracefulRestart', 'ForceRestart', 'Nmi', 'PushPowerButton'];
const BOOT_TARGETS = ['None', 'Pxe', 'Cd', 'Hdd', 'BiosSetup', 'UefiHttp'];

function error(code: string, message: string) {
  return { error: { code: `Base.1.8.${code}`, message, '@Message.ExtendedInfo': [{ '@odata.type': '#Message.v1_1_1.Message', MessageId: `Base.1.8.${code}`, Message: message, Severity: 'Warning' }] } };
}

export class RedfishStandin {
  readonly requests: StandinRequest[] = [];
  readonly sessions = new Map<string, { id: string; uses: number }>();
  readonly erased: string[] = [];
  readonly system = {
    power: 'Off' as 'On' | 'Off',
    boot: { BootSourceOverrideEnabled: 'Disabled', BootSourceOverrideTarget: 'None' },
    cd: { Image: '', Inserted: false },
  };
  private readonly tasks = new Map<string, { polls: number; drive: string }>();
  private server?: https.Server;
  url = '';

  constructor(private readonly o: StandinOptions) {}

  async start(): Promise<string> {
    this.server = https.createServer({ cert: readFileSync(this.o.cert), key: readFileSync(this.o.key) }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = text ? JSON.parse(text) : undefined;
        } catch {
          body = Symbol.for('malformed');
        }
        const [status, headers, payload] = this.answer(req.method ?? 'GET', new URL(req.url ?? '/', 'https://x').pathname, req.headers, body);
        const out = payload === undefined ? '' : JSON.stringify(payload);
        res.writeHead(status, { 'content-type': 'application/json', 'odata-version': '4.0', 'content-length': Buffer.byteLength(out), ...headers }).end(out);
      });
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.url = `https://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this.url;
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => {
      this.server?.close(() => r());
      this.server?.closeAllConnections();
    });
  }

  private authOf(headers: Record<string, string | string[] | undefined>): StandinRequest['auth'] {
    const token = headers['x-auth-token'];
    if (typeof token === 'string') {
      const session = this.sessions.get(token);
      if (!session) return 'bad-session';
      session.uses++;
      if (this.o.sessionRequests !== undefined && session.uses > this.o.sessionRequests) {
        this.sessions.delete(token);
        return 'bad-session';
      }
      return 'session';
    }
    const basic = headers.authorization;
    if (typeof basic === 'string' && basic.startsWith('Basic ')) {
      const [user, password] = Buffer.from(basic.slice(6), 'base64').toString('utf8').split(':');
      return user === this.o.user && password === this.o.password ? 'basic' : 'none';
    }
    return 'none';
  }

  private answer(method: string, path: string, headers: Record<string, string | string[] | undefined>, body: unknown): [number, Record<string, string>, unknown] {
    const p = path.replace(/\/+$/, '') || '/';
    if (method === 'GET' && (p === '/redfish/v1' || p === '/redfish')) {
      this.requests.push({ method, path: p, auth: 'none' });
      return [200, {}, { '@odata.id': '/redfish/v1/', '@odata.type': '#ServiceRoot.v1_11_0.ServiceRoot', Id: 'RootService', RedfishVersion: '1.11.0', Systems: { '@odata.id': '/redfish/v1/Systems' }, SessionService: { '@odata.id': '/redfish/v1/SessionService' }, Links: { Sessions: { '@odata.id': '/redfish/v1/SessionService/Sessions' } } }];
    }
    if (method === 'POST' && p === '/redfish/v1/SessionService/Sessions') {
      this.requests.push({ method, path: p, auth: 'none', body: { ...(body as object), Password: '***' } });
      if (this.o.sessionStatus) return [this.o.sessionStatus, {}, error('ActionNotSupported', 'sessions are not supported')];
      const b = body as { UserName?: unknown; Password?: unknown };
      if (typeof b?.UserName !== 'string' || typeof b.Password !== 'string') return [400, {}, error('PropertyValueTypeError', 'UserName and Password must be strings')];
      if (b.UserName !== this.o.user || b.Password !== this.o.password) return [401, {}, error('NoValidSession', 'invalid credentials')];
      const token = randomBytes(16).toString('hex');
      const id = randomBytes(4).toString('hex');
      this.sessions.set(token, { id, uses: 0 });
      return [201, { 'x-auth-token': token, location: `/redfish/v1/SessionService/Sessions/${id}` }, { '@odata.id': `/redfish/v1/SessionService/Sessions/${id}`, '@odata.type': '#Session.v1_3_0.Session', Id: id, UserName: b.UserName }];
    }
    const auth = this.authOf(headers);
    this.requests.push({ method, path: p, auth, body });
    if (auth === 'none' || auth === 'bad-session') return [401, {}, error('NoValidSession', 'no valid session')];
    if (body === Symbol.for('malformed')) return [400, {}, error('MalformedJSON', 'malformed JSON')];

    const session = /^\/redfish\/v1\/SessionService\/Sessions\/(\w+)$/.exec(p);
    if (method === 'DELETE' && session) {
      for (const [token, s] of this.sessions) if (s.id === session[1]) this.sessions.delete(token);
      return [204, {}, undefined];
    }
    const sys = '/redfish/v1/Systems/1';
    if (method === 'GET' && p === '/redfish/v1/Systems') return [200, {}, { Members: [{ '@odata.id': sys }], 'Members@odata.count': 1 }];
    if (p === sys && method === 'GET') {
      return [200, {}, {
        '@odata.id': sys, '@odata.type': '#ComputerSystem.v1_13_0.ComputerSystem', Id: '1', PowerState: this.system.power, Boot: { ...this.system.boot, 'BootSourceOverrideTarget@Redfish.AllowableValues': BOOT_TARGETS },
        VirtualMedia: { '@odata.id': `${sys}/VirtualMedia` }, Storage: { '@odata.id': `${sys}/Storage` },
        Actions: { '#ComputerSystem.Reset': { target: `${sys}/Actions/ComputerSystem.Reset`, 'ResetType@Redfish.AllowableValues': RESET_TYPES } },
      }];
    }
    if (p === sys && method === 'PATCH') {
      const boot = (body as { Boot?: Record<string, unknown> })?.Boot;
      if (!boot) return [400, {}, error('PropertyUnknown', 'only Boot can be changed')];
      for (const [k, v] of Object.entries(boot)) {
        if (k === 'BootSourceOverrideTarget' && !BOOT_TARGETS.includes(String(v))) return [400, {}, error('PropertyValueNotInList', `${String(v)} is not a boot target`)];
        if (k === 'BootSourceOverrideEnabled' && !['Disabled', 'Once', 'Continuous'].includes(String(v))) return [400, {}, error('PropertyValueNotInList', `${String(v)}`)];
        if (k !== 'BootSourceOverrideTarget' && k !== 'BootSourceOverrideEnabled') return [400, {}, error('PropertyUnknown', k)];
      }
      Object.assign(this.system.boot, boot);
      return [204, {}, undefined];
    }
    if (p === `${sys}/Actions/ComputerSystem.Reset` && method === 'POST') {
      const type = (body as { ResetType?: unknown })?.ResetType;
      if (typeof type !== 'string' || !RESET_TYPES.includes(type)) return [400, {}, error('ActionParameterNotSupported', `ResetType ${String(type)}`)];
      this.system.power = type === 'ForceOff' || type === 'GracefulShutdown' ? 'Off' : 'On';
      return [204, {}, undefined];
    }
    if (p === `${sys}/VirtualMedia` && method === 'GET') return [200, {}, { Members: [{ '@odata.id': `${sys}/VirtualMedia/CD1` }] }];
    if (p === `${sys}/VirtualMedia/CD1` && method === 'GET') {
      return [200, {}, { '@odata.id': `${sys}/VirtualMedia/CD1`, Id: 'CD1', MediaTypes: ['CD', 'DVD'], ...this.system.cd, Actions: { '#VirtualMedia.InsertMedia': { target: `${sys}/VirtualMedia/CD1/Actions/VirtualMedia.InsertMedia` }, '#VirtualMedia.EjectMedia': { target: `${sys}/VirtualMedia/CD1/Actions/VirtualMedia.EjectMedia` } } }];
    }
    if (p === `${sys}/VirtualMedia/CD1/Actions/VirtualMedia.InsertMedia` && method === 'POST') {
      const b = body as { Image?: unknown; Inserted?: unknown; WriteProtected?: unknown };
      if (typeof b?.Image !== 'string' || (b.Inserted !== undefined && typeof b.Inserted !== 'boolean') || (b.WriteProtected !== undefined && typeof b.WriteProtected !== 'boolean')) return [400, {}, error('PropertyValueTypeError', 'Image string, Inserted and WriteProtected booleans')];
      this.system.cd = { Image: b.Image, Inserted: b.Inserted !== false };
      return [204, {}, undefined];
    }
    if (p === `${sys}/VirtualMedia/CD1/Actions/VirtualMedia.EjectMedia` && method === 'POST') {
      this.system.cd = { Image: '', Inserted: false };
      return [204, {}, undefined];
    }
    if (p === `${sys}/Storage` && method === 'GET') return [200, {}, { Members: [{ '@odata.id': `${sys}/Storage/1` }] }];
    if (p === `${sys}/Storage/1` && method === 'GET') return [200, {}, { Id: '1', Drives: [{ '@odata.id': `${sys}/Storage/1/Drives/0` }, { '@odata.id': `${sys}/Storage/1/Drives/1` }] }];
    const drive = /^\/redfish\/v1\/Systems\/1\/Storage\/1\/Drives\/(\d)(\/Actions\/Drive\.SecureErase)?$/.exec(p);
    if (drive && !drive[2] && method === 'GET') return [200, {}, { '@odata.id': p, Id: drive[1], Actions: { '#Drive.SecureErase': { target: `${p}/Actions/Drive.SecureErase` } } }];
    if (drive?.[2] && method === 'POST') {
      const id = randomBytes(4).toString('hex');
      this.tasks.set(id, { polls: 0, drive: drive[1]! });
      return [202, { location: `/redfish/v1/TaskService/TaskMonitors/${id}` }, { '@odata.id': `/redfish/v1/TaskService/Tasks/${id}`, '@odata.type': '#Task.v1_5_0.Task', Id: id, TaskState: 'Running', PercentComplete: 0 }];
    }
    const monitor = /^\/redfish\/v1\/TaskService\/TaskMonitors\/(\w+)$/.exec(p);
    if (monitor && method === 'GET') {
      const task = this.tasks.get(monitor[1]!);
      if (!task) return [404, {}, error('ResourceMissingAtURI', p)];
      task.polls++;
      if (task.polls < (this.o.taskPolls ?? 2)) return [202, { 'retry-after': '1', location: p }, { Id: monitor[1], TaskState: 'Running', PercentComplete: 50 * task.polls }];
      const failing = this.o.failingDrives?.includes(task.drive);
      if (!failing) this.erased.push(task.drive);
      return [200, {}, { Id: monitor[1], '@odata.type': '#Task.v1_5_0.Task', TaskState: failing ? 'Exception' : 'Completed', TaskStatus: failing ? 'Critical' : 'OK', PercentComplete: 100, Messages: failing ? [{ MessageId: 'Base.1.8.GeneralError', Message: `drive ${task.drive} is write-protected` }] : [] }];
    }
    return [404, {}, error('ResourceMissingAtURI', `${method} ${p}`)];
  }
}
