/**
 * AZURE RESOURCE MANAGER STAND-IN (no ARM or Compute emulator exists). A small HTTPS server on
 * loopback that speaks Resource Manager's wire format for the calls the azure driver makes:
 * Microsoft.Compute images, virtualMachines (instance view, start, boot diagnostics), disks and
 * Microsoft.Network networkInterfaces, publicIPAddresses, at the API versions of shapes.ts, with
 * long-running operations as ARM runs them (201/202 + `Azure-AsyncOperation` and `Location`
 * headers, `Retry-After`, an operation resource that answers InProgress for a few polls, then
 * Succeeded or Failed with an error). Every body is checked against the API's shape; references
 * are checked as ARM checks them (resource group, image, subnet, NIC, public IP exist; a NIC or a
 * disk in use is not deleted; custom data cannot change on an existing VM); errors come in ARM's
 * `{"error": {code, message, target}}` form with its codes. Requests need the bearer token of its
 * App Service managed-identity endpoint (plain HTTP on loopback, `IDENTITY_ENDPOINT` /
 * `IDENTITY_HEADER`), so DefaultAzureCredential runs its real code path.
 *
 * A created VM "boots" when its create operation ends: the stand-in reads the cloud-config of its
 * custom data (with a YAML parser) and writes the serial log the image would write, ending in
 * `kubedos: ready <hostname>`; `ovfEnv(vm)` gives the ovf-env.xml Azure would put on its
 * provisioning media, for the image's real reader. Faults (throttling, quota, permissions,
 * provisioning timeouts) are injected per request pattern.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { fingerprintOfPublicKey } from '../../../src/targets/identity';
import { checkShape, type Shape } from '../api-shape';
import { ovfEnvXml } from './ovf-env';
import { API_VERSIONS, DISK_UPDATE, IMAGE, NETWORK_INTERFACE, PUBLIC_IP_ADDRESS, VIRTUAL_MACHINE } from './shapes';

export interface AzureStandinOptions {
  subscription: string;
  location: string;
  resourceGroups: readonly string[];
  /** Resource ids of the subnets that exist. */
  subnets: readonly string[];
  /** Polls an operation answers InProgress before it ends. @default 2 */
  polls?: number;
  /** Checks a managed image's blob (Azure reads it): a problem, or undefined when it is a fixed VHD. */
  checkBlob?: (blobUri: string) => Promise<string | undefined>;
}

export interface StandinRequest {
  method: string;
  /** Path without the query. */
  path: string;
  apiVersion?: string;
  body?: unknown;
  status: number;
}

export interface Fault {
  method?: string;
  path: RegExp;
  status: number;
  code: string;
  message: string;
  /** The request field ARM names in the error (`error.target`), e.g. vmSize. */
  target?: string;
  /** How many requests it answers. @default 1 */
  times?: number;
  retryAfter?: number;
}

interface Resource {
  id: string;
  type: keyof typeof API_VERSIONS;
  name: string;
  body: Record<string, unknown>;
  /** VMs: the serial log, its SAS signature, power state. */
  serial?: string;
  sig?: string;
  power?: string;
  customData?: string;
}

interface Operation {
  id: string;
  provider: 'Microsoft.Compute' | 'Microsoft.Network';
  polls: number;
  status: 'InProgress' | 'Succeeded' | 'Failed';
  error?: { code: string; message: string };
  done: () => { code: string; message: string } | void;
}

export interface AzureStandin {
  /** What the driver's process needs: ARM endpoint and CA, the managed-identity endpoint. */
  env: Record<string, string>;
  requests: StandinRequest[];
  /** The wire JSON of a resource (`virtualMachines/<name>`, `networkInterfaces/<name>`, …) in a resource group. */
  resource(rg: string, typeAndName: string): Record<string, unknown> | undefined;
  /** Names of the resources of a type in a resource group. */
  names(rg: string, type: string): string[];
  inject(fault: Fault): void;
  /** Forget the faults not answered yet. */
  clearFaults(): void;
  /** The create operation of this VM ends Failed with `code` (e.g. OSProvisioningTimedOut). */
  failProvisioning(vmName: string, code: string, message: string): void;
  /** ovf-env.xml as Azure puts it on the VM's provisioning media. */
  ovfEnv(rg: string, vmName: string): string;
  /** Make a resource that is not KubeDos's (a VM someone else made). */
  put(rg: string, typeAndName: string, body: Record<string, unknown>): void;
  close(): Promise<void>;
}

const COMPUTE = 'Microsoft.Compute';
const NETWORK = 'Microsoft.Network';
const SHAPES: Record<string, Shape> = {
  'Microsoft.Compute/virtualMachines': VIRTUAL_MACHINE,
  'Microsoft.Compute/images': IMAGE,
  'Microsoft.Network/networkInterfaces': NETWORK_INTERFACE,
  'Microsoft.Network/publicIPAddresses': PUBLIC_IP_ADDRESS,
};
const RESERVED_USERS = new Set(['administrator', 'admin', 'user', 'user1', 'test', 'user2', 'test1', 'user3', 'admin1', '1', '123', 'a', 'actuser', 'adm', 'admin2', 'aspnet', 'backup', 'console', 'david', 'guest', 'john', 'owner', 'root', 'server', 'sql', 'support', 'support_388945a0', 'sys', 'test2', 'test3', 'user4', 'user5']);

class ArmError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly target?: string,
  ) {
    super(message);
  }
}

/** A self-signed certificate for 127.0.0.1, made with openssl. */
function selfSigned(dir: string): { key: string; cert: string; caFile: string } {
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=azure-arm-standin', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  return { key: readFileSync(key, 'utf8'), cert: readFileSync(cert, 'utf8'), caFile: cert };
}

export async function startAzureStandin(o: AzureStandinOptions): Promise<AzureStandin> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kubedos-azure-standin-'));
  const tls = selfSigned(dir);
  const token = `standin-${randomBytes(16).toString('hex')}`;
  const identityHeader = randomBytes(12).toString('hex');
  const resources = new Map<string, Resource>();
  const operations = new Map<string, Operation>();
  const faults: Array<Fault & { left: number }> = [];
  const failedProvisioning = new Map<string, { code: string; message: string }>();
  const requests: StandinRequest[] = [];
  const polls = o.polls ?? 2;
  const rgs = new Set(o.resourceGroups.map((g) => g.toLowerCase()));
  const subnets = new Set(o.subnets.map((s) => s.toLowerCase()));
  let base = '';
  let nextIp = 4;

  const idOf = (rg: string, ns: string, type: string, name: string) => `/subscriptions/${o.subscription}/resourceGroups/${rg}/providers/${ns}/${type}/${name}`;
  const get = (id: string) => resources.get(id.toLowerCase());

  function startOperation(provider: Operation['provider'], done: Operation['done']): Operation {
    const op: Operation = { id: randomUUID(), provider, polls, status: 'InProgress', done };
    operations.set(op.id, op);
    return op;
  }
  function operationHeaders(op: Operation, apiVersion: string): Record<string, string> {
    const url = `${base}/subscriptions/${o.subscription}/providers/${op.provider}/locations/${o.location}/operations/${op.id}?api-version=${apiVersion}`;
    return { 'azure-asyncoperation': url, location: `${url}&monitor=true`, 'retry-after': '1' };
  }

  /** The wire JSON of a resource as GET returns it. */
  function view(r: Resource, expand?: string): Record<string, unknown> {
    const body = structuredClone(r.body) as Record<string, unknown> & { properties?: Record<string, unknown> };
    if (r.type === 'Microsoft.Compute/virtualMachines' && body.properties) {
      const os = body.properties.osProfile as Record<string, unknown> | undefined;
      if (os) delete os.customData; // write-only, as in Azure
      if (expand === 'instanceView') body.properties.instanceView = instanceView(r);
    }
    return { id: r.id, name: r.name, type: r.type, location: o.location, ...body };
  }
  function instanceView(r: Resource) {
    const state = String((r.body.properties as Record<string, unknown>).provisioningState ?? 'Creating');
    const failure = (r.body.properties as Record<string, unknown>).failure as { code: string; message: string } | undefined;
    return {
      computerName: (r.body.properties as { osProfile?: { computerName?: string } }).osProfile?.computerName,
      statuses: [
        failure ? { code: `ProvisioningState/failed/${failure.code}`, level: 'Error', displayStatus: 'Provisioning failed', message: failure.message } : { code: `ProvisioningState/${state.toLowerCase()}`, level: 'Info', displayStatus: `Provisioning ${state.toLowerCase()}` },
        ...(r.power ? [{ code: `PowerState/${r.power}`, level: 'Info', displayStatus: `VM ${r.power}` }] : []),
      ],
    };
  }

  function bootSerial(r: Resource): string {
    const custom = Buffer.from(r.customData ?? '', 'base64').toString('utf8');
    let config: { hostname?: string; ssh_keys?: { ed25519_public?: string } } = {};
    try {
      config = custom.startsWith('#cloud-config') ? ((parseYaml(custom) as typeof config) ?? {}) : {};
    } catch {
      config = {};
    }
    const host = config.hostname ?? String((r.body.properties as { osProfile?: { computerName?: string } }).osProfile?.computerName ?? 'localhost');
    const lines = ['[    0.000000] Linux version 6.1.0-stand-in (Azure stand-in boot)', 'kubedos: metadata /usr/lib/kubedos/metadata.d/30-azure', 'kubedos: azure: provisioning media on /dev/sr0'];
    lines.push(`kubedos: azure: read ovf-env.xml${custom ? ' with custom data' : ''}`, `kubedos: nocloud: hostname ${host}`);
    if (config.ssh_keys?.ed25519_public) lines.push(`kubedos: hostkey 256 ${fingerprintOfPublicKey(config.ssh_keys.ed25519_public)} root@${host} (ED25519)`);
    lines.push('kubedos: firstboot done', 'kubedos: azure: reported ready to the WireServer', `kubedos: ready ${host}`, '');
    return lines.join('\r\n');
  }

  function checkBody(type: string, body: unknown): void {
    const problem = checkShape(body, SHAPES[type]!);
    if (!problem) return;
    if (problem.kind === 'unknown') throw new ArmError(400, 'InvalidRequestContent', `The request content was invalid and could not be deserialized: 'Could not find member '${problem.path.split('.').pop()}' on object of type '${type.split('/')[1]}'. Path '${problem.path}'.'`);
    if (problem.kind === 'required') throw new ArmError(400, 'InvalidParameter', `Required parameter '${problem.path}' is missing (null).`, problem.path);
    throw new ArmError(400, 'InvalidRequestFormat', `Cannot parse the request. ${problem.message}`, problem.path);
  }

  async function handle(method: string, url: URL, body: unknown, headers: http.IncomingHttpHeaders): Promise<{ status: number; body?: unknown; headers?: Record<string, string>; text?: string }> {
    const p = url.pathname;
    // Boot diagnostics blobs: SAS-signed, no bearer token (like Storage).
    const diag = /^\/bootdiag\/([^/]+)\/serialconsole\.log$/.exec(p);
    if (diag) {
      const vm = [...resources.values()].find((r) => r.type === 'Microsoft.Compute/virtualMachines' && r.name === diag[1]);
      if (!vm || url.searchParams.get('sig') !== vm.sig) return { status: 403, text: 'AuthenticationFailed' };
      if (!vm.serial) return { status: 404, text: 'BlobNotFound' };
      return { status: 200, text: vm.serial };
    }
    if (headers.authorization !== `Bearer ${token}`) throw new ArmError(401, 'AuthenticationFailed', 'Authentication failed. The Authorization header is missing or its bearer token is not valid.');
    for (const f of faults) {
      if (f.left > 0 && f.path.test(p) && (!f.method || f.method === method)) {
        f.left--;
        throw Object.assign(new ArmError(f.status, f.code, f.message, f.target), { retryAfter: f.retryAfter });
      }
    }
    const apiVersion = url.searchParams.get('api-version') ?? '';

    const opMatch = new RegExp(`^/subscriptions/${o.subscription}/providers/(Microsoft\\.(?:Compute|Network))/locations/${o.location}/operations/([0-9a-f-]+)$`, 'i').exec(p);
    if (opMatch && method === 'GET') {
      const op = operations.get(opMatch[2]!);
      if (!op) throw new ArmError(404, 'NotFound', `The operation ${opMatch[2]} was not found.`);
      if (op.status === 'InProgress' && --op.polls <= 0) {
        const failure = op.done();
        op.status = failure ? 'Failed' : 'Succeeded';
        if (failure) op.error = failure;
      }
      return { status: 200, headers: op.status === 'InProgress' ? { 'retry-after': '1' } : {}, body: { name: op.id, status: op.status, startTime: new Date().toISOString(), ...(op.error ? { error: op.error } : {}) } };
    }

    const m = new RegExp(`^/subscriptions/${o.subscription}/resourceGroups/([^/]+)/providers/(Microsoft\\.(?:Compute|Network))/([A-Za-z]+)(?:/([^/]+))?(?:/([A-Za-z]+))?$`, 'i').exec(p);
    if (!m) throw new ArmError(404, 'InvalidResourceType', `The resource type could not be found for ${p}.`);
    const [, rg, ns, type, name, action] = m as unknown as [string, string, string, string, string | undefined, string | undefined];
    const fullType = `${ns}/${type}` as keyof typeof API_VERSIONS;
    const wanted = API_VERSIONS[fullType];
    if (!wanted) throw new ArmError(400, 'InvalidResourceType', `The resource type '${type}' could not be found in the namespace '${ns}'.`);
    if (apiVersion !== wanted) throw new ArmError(400, 'InvalidApiVersionParameter', `The api-version '${apiVersion}' is not the one this stand-in implements for ${fullType} (${wanted}).`);
    if (!rgs.has(rg.toLowerCase())) throw new ArmError(404, 'ResourceGroupNotFound', `Resource group '${rg}' could not be found.`);

    if (!name) {
      if (method !== 'GET') throw new ArmError(405, 'MethodNotAllowed', 'The method is not allowed.');
      const value = [...resources.values()].filter((r) => r.type === fullType && r.id.toLowerCase().startsWith(`/subscriptions/${o.subscription}/resourcegroups/${rg.toLowerCase()}/`)).map((r) => view(r));
      return { status: 200, body: { value } };
    }
    const id = idOf(rg, ns, type, name);
    const existing = get(id);

    if (action) return actionOn(existing, fullType, action, method, url, apiVersion);

    if (method === 'GET') {
      if (!existing) throw new ArmError(404, fullType === 'Microsoft.Compute/disks' ? 'ResourceNotFound' : 'ResourceNotFound', `The Resource '${fullType}/${name}' under resource group '${rg}' was not found.`);
      return { status: 200, body: view(existing, url.searchParams.get('$expand') ?? undefined) };
    }
    if (method === 'DELETE') {
      if (!existing) return { status: 204 };
      return deleteResource(existing, apiVersion);
    }
    if (method === 'PATCH' && fullType === 'Microsoft.Compute/disks') {
      if (!existing) throw new ArmError(404, 'ResourceNotFound', `The Resource '${fullType}/${name}' under resource group '${rg}' was not found.`);
      const problem = checkShape(body, DISK_UPDATE);
      if (problem) throw new ArmError(400, 'InvalidRequestContent', problem.message);
      const b = body as { tags?: Record<string, string> };
      if (b.tags) existing.body.tags = b.tags;
      return { status: 200, body: view(existing) };
    }
    if (method === 'PUT') return put(rg, fullType, name, id, existing, body as Record<string, unknown>, apiVersion);
    throw new ArmError(405, 'MethodNotAllowed', 'The method is not allowed.');
  }

  async function put(rg: string, type: keyof typeof API_VERSIONS, name: string, id: string, existing: Resource | undefined, body: Record<string, unknown>, apiVersion: string) {
    checkBody(type, body);
    if (body.location !== undefined && String(body.location).toLowerCase() !== o.location) throw new ArmError(400, 'LocationNotAvailableForResourceType', `The provided location '${String(body.location)}' is not available for this stand-in (${o.location}).`);
    const props = (body.properties ?? {}) as Record<string, unknown>;
    if (type === 'Microsoft.Compute/images') {
      const blobUri = String((props.storageProfile as { osDisk: { blobUri?: string } }).osDisk.blobUri ?? '');
      const problem = blobUri ? await o.checkBlob?.(blobUri) : 'a managed image needs storageProfile.osDisk.blobUri';
      if (problem) throw new ArmError(400, 'InvalidParameter', problem, 'blobUri');
      const r: Resource = existing ?? { id, type, name, body: {} };
      r.body = { ...structuredClone(body), properties: { ...structuredClone(props), provisioningState: 'Creating' } };
      resources.set(id.toLowerCase(), r);
      const op = startOperation(COMPUTE, () => {
        (r.body.properties as Record<string, unknown>).provisioningState = 'Succeeded';
      });
      return { status: existing ? 200 : 201, body: view(r), headers: operationHeaders(op, apiVersion) };
    }
    if (type === 'Microsoft.Network/publicIPAddresses') {
      const r: Resource = existing ?? { id, type, name, body: {} };
      r.body = { ...structuredClone(body), properties: { ...structuredClone(props), provisioningState: 'Updating', ipAddress: `20.50.0.${nextIp++}` } };
      resources.set(id.toLowerCase(), r);
      const op = startOperation(NETWORK, () => {
        (r.body.properties as Record<string, unknown>).provisioningState = 'Succeeded';
      });
      return { status: existing ? 200 : 201, body: view(r), headers: operationHeaders(op, apiVersion) };
    }
    if (type === 'Microsoft.Network/networkInterfaces') {
      const configs = props.ipConfigurations as Array<{ name: string; properties?: { subnet?: { id?: string }; publicIPAddress?: { id?: string } } }>;
      if (configs.length === 0) throw new ArmError(400, 'InvalidParameter', 'A network interface needs at least one IP configuration.', 'ipConfigurations');
      for (const c of configs) {
        const subnet = c.properties?.subnet?.id ?? '';
        if (!subnets.has(subnet.toLowerCase())) throw new ArmError(400, 'InvalidResourceReference', `Resource ${subnet} referenced by resource ${id} was not found. Please make sure that the referenced resource exists, and that both resources are in the same region.`, 'subnet');
        const ip = c.properties?.publicIPAddress?.id;
        if (ip && !get(ip)) throw new ArmError(400, 'InvalidResourceReference', `Resource ${ip} referenced by resource ${id} was not found.`, 'publicIPAddress');
      }
      const r: Resource = existing ?? { id, type, name, body: {} };
      const address = existing ? ((existing.body.properties as { ipConfigurations: Array<{ properties: { privateIPAddress: string } }> }).ipConfigurations[0]!.properties.privateIPAddress) : `10.0.0.${nextIp++}`;
      r.body = {
        ...structuredClone(body),
        properties: {
          ...structuredClone(props),
          ipConfigurations: configs.map((c, i) => ({ ...c, id: `${id}/ipConfigurations/${c.name}`, properties: { ...c.properties, privateIPAddress: i === 0 ? address : `10.0.1.${nextIp++}`, provisioningState: 'Succeeded' } })),
          provisioningState: 'Succeeded',
          virtualMachine: (existing?.body.properties as { virtualMachine?: unknown } | undefined)?.virtualMachine,
        },
      };
      resources.set(id.toLowerCase(), r);
      const op = startOperation(NETWORK, () => undefined);
      return { status: existing ? 200 : 201, body: view(r), headers: operationHeaders(op, apiVersion) };
    }
    if (type === 'Microsoft.Compute/virtualMachines') return putVm(rg, name, id, existing, body, props, apiVersion);
    throw new ArmError(405, 'MethodNotAllowed', 'The method is not allowed.');
  }

  function putVm(rg: string, name: string, id: string, existing: Resource | undefined, body: Record<string, unknown>, props: Record<string, unknown>, apiVersion: string) {
    const osProfile = (props.osProfile ?? {}) as { computerName?: string; adminUsername?: string; customData?: string; linuxConfiguration?: { disablePasswordAuthentication?: boolean; ssh?: { publicKeys?: Array<{ path: string; keyData: string }> } } };
    const storage = props.storageProfile as { imageReference?: { id?: string }; osDisk: { name?: string; createOption: string; deleteOption?: string; diskSizeGB?: number } };
    const nics = (props.networkProfile as { networkInterfaces?: Array<{ id: string; properties?: { primary?: boolean; deleteOption?: string } }> }).networkInterfaces ?? [];
    if (existing) {
      const before = existing.customData;
      if ((osProfile.customData ?? undefined) !== before) throw new ArmError(409, 'PropertyChangeNotAllowed', "Changing property 'customData' is not allowed.", 'customData');
      return { status: 200, body: view(existing) };
    }
    if (!/^[A-Za-z0-9][A-Za-z0-9-]{0,62}[A-Za-z0-9]?$/.test(osProfile.computerName ?? '')) throw new ArmError(400, 'InvalidParameter', `Linux host name cannot exceed 64 characters in length or contain the following characters: \` ~ ! @ # $ % ^ & * ( ) = + _ [ ] { } \\ | ; : ' " , < > / ?.`, 'computerName');
    if (RESERVED_USERS.has((osProfile.adminUsername ?? '').toLowerCase())) throw new ArmError(400, 'InvalidParameter', `The Admin Username specified is not allowed.`, 'adminUsername');
    const keys = osProfile.linuxConfiguration?.ssh?.publicKeys ?? [];
    if (osProfile.linuxConfiguration?.disablePasswordAuthentication && keys.length === 0) throw new ArmError(400, 'InvalidParameter', 'Authentication using either SSH or by user name and password must be enabled in Linux profile.', 'linuxConfiguration');
    for (const k of keys) if (k.path !== `/home/${osProfile.adminUsername}/.ssh/authorized_keys`) throw new ArmError(400, 'InvalidParameter', `Destination path for SSH public keys is currently limited to its default value /home/${osProfile.adminUsername}/.ssh/authorized_keys due to a known issue in Linux provisioning agent.`, 'linuxConfiguration.ssh.publicKeys.path');
    if (osProfile.customData !== undefined && (!/^[A-Za-z0-9+/]*={0,2}$/.test(osProfile.customData) || osProfile.customData.length > 87_380)) throw new ArmError(400, 'InvalidParameter', 'Custom data in OSProfile must be in Base64 encoding and with a maximum length of 87380 characters.', 'customData');
    const imageId = storage.imageReference?.id ?? '';
    const image = get(imageId);
    if (!image || image.type !== 'Microsoft.Compute/images') throw new ArmError(404, 'NotFound', `The Image '${imageId}' cannot be found in '${o.location}' region.`, 'imageReference');
    if (nics.length === 0) throw new ArmError(400, 'InvalidParameter', 'A virtual machine needs at least one network interface.', 'networkInterfaces');
    const nic = get(nics[0]!.id);
    if (!nic) throw new ArmError(400, 'InvalidResourceReference', `Resource ${nics[0]!.id} referenced by resource ${id} was not found.`, 'networkInterfaces');
    const attached = (nic.body.properties as { virtualMachine?: { id: string } }).virtualMachine;
    if (attached && attached.id.toLowerCase() !== id.toLowerCase()) throw new ArmError(400, 'NicInUse', `Network interface ${nic.id} is used by existing resource ${attached.id}.`, 'networkInterfaces');
    const vm: Resource = { id, type: 'Microsoft.Compute/virtualMachines', name, body: {}, customData: osProfile.customData, power: 'starting', sig: randomBytes(12).toString('hex') };
    vm.body = { ...structuredClone(body), properties: { ...structuredClone(props), provisioningState: 'Creating', vmId: randomUUID() } };
    (nic.body.properties as Record<string, unknown>).virtualMachine = { id };
    resources.set(id.toLowerCase(), vm);
    const diskName = storage.osDisk.name ?? `${name}_OsDisk_1_${randomBytes(16).toString('hex')}`;
    const diskId = idOf(rg, COMPUTE, 'disks', diskName);
    const op = startOperation(COMPUTE, () => {
      resources.set(diskId.toLowerCase(), {
        id: diskId,
        type: 'Microsoft.Compute/disks',
        name: diskName,
        body: { properties: { diskSizeGB: storage.osDisk.diskSizeGB ?? 2, creationData: { createOption: 'FromImage', imageReference: { id: imageId } }, provisioningState: 'Succeeded' }, managedBy: id },
      });
      ((vm.body.properties as Record<string, unknown>).storageProfile as { osDisk: Record<string, unknown> }).osDisk.managedDisk = { ...(storage.osDisk as { managedDisk?: object }).managedDisk, id: diskId };
      const failure = failedProvisioning.get(name);
      if (failure) {
        (vm.body.properties as Record<string, unknown>).provisioningState = 'Failed';
        (vm.body.properties as Record<string, unknown>).failure = failure;
        vm.serial = '[    0.000000] Linux version 6.1.0-stand-in (Azure stand-in boot)\r\n';
        vm.power = 'running';
        return failure;
      }
      (vm.body.properties as Record<string, unknown>).provisioningState = 'Succeeded';
      vm.power = 'running';
      vm.serial = bootSerial(vm);
      return undefined;
    });
    return { status: 201, body: view(vm), headers: operationHeaders(op, apiVersion) };
  }

  function deleteResource(r: Resource, apiVersion: string) {
    const props = r.body.properties as Record<string, unknown>;
    if (r.type === 'Microsoft.Network/networkInterfaces' && (props.virtualMachine as { id?: string } | undefined)?.id && get((props.virtualMachine as { id: string }).id)) {
      throw new ArmError(400, 'NicInUse', `Network Interface ${r.id} is used by existing resource ${(props.virtualMachine as { id: string }).id}. In order to delete the network interface, it must be dissociated from the resource.`);
    }
    if (r.type === 'Microsoft.Network/publicIPAddresses') {
      const user = [...resources.values()].find((x) => x.type === 'Microsoft.Network/networkInterfaces' && JSON.stringify(x.body).toLowerCase().includes(r.id.toLowerCase()));
      if (user) throw new ArmError(400, 'PublicIPAddressInUse', `Public IP address ${r.id} can not be deleted since it is still allocated to resource ${user.id}/ipConfigurations/ipconfig1.`);
    }
    if (r.type === 'Microsoft.Compute/disks' && r.body.managedBy && get(String(r.body.managedBy))) throw new ArmError(409, 'OperationNotAllowed', `Disk ${r.name} is attached to VM ${String(r.body.managedBy)}.`);
    const provider = r.type.startsWith(NETWORK) ? NETWORK : COMPUTE;
    if (r.type === 'Microsoft.Compute/virtualMachines') props.provisioningState = 'Deleting';
    const op = startOperation(provider, () => {
      resources.delete(r.id.toLowerCase());
      if (r.type !== 'Microsoft.Compute/virtualMachines') return;
      const osDisk = (props.storageProfile as { osDisk: { deleteOption?: string; managedDisk?: { id?: string } } }).osDisk;
      const disk = osDisk.managedDisk?.id ? get(osDisk.managedDisk.id) : undefined;
      if (disk) {
        if (osDisk.deleteOption === 'Delete') resources.delete(disk.id.toLowerCase());
        else delete disk.body.managedBy;
      }
      for (const n of (props.networkProfile as { networkInterfaces: Array<{ id: string; properties?: { deleteOption?: string } }> }).networkInterfaces) {
        const nic = get(n.id);
        if (!nic) continue;
        if (n.properties?.deleteOption === 'Delete') resources.delete(nic.id.toLowerCase());
        else delete (nic.body.properties as Record<string, unknown>).virtualMachine;
      }
    });
    return { status: 202, headers: operationHeaders(op, apiVersion) };
  }

  function actionOn(vm: Resource | undefined, type: string, action: string, method: string, url: URL, apiVersion: string) {
    if (type !== 'Microsoft.Compute/virtualMachines') throw new ArmError(404, 'InvalidResourceType', `No action ${action} on ${type}.`);
    if (!vm) throw new ArmError(404, 'ResourceNotFound', `The Resource 'Microsoft.Compute/virtualMachines' was not found.`);
    if (action === 'instanceView' && method === 'GET') return { status: 200, body: instanceView(vm) };
    if (action === 'retrieveBootDiagnosticsData' && method === 'POST') {
      const minutes = Number(url.searchParams.get('sasUriExpirationTimeInMinutes') ?? 120);
      if (!Number.isInteger(minutes) || minutes < 1 || minutes > 1440) throw new ArmError(400, 'InvalidParameter', 'sasUriExpirationTimeInMinutes must be between 1 and 1440.', 'sasUriExpirationTimeInMinutes');
      return { status: 200, body: { consoleScreenshotBlobUri: `${base}/bootdiag/${vm.name}/screenshot.bmp?sig=${vm.sig}`, serialConsoleLogBlobUri: `${base}/bootdiag/${vm.name}/serialconsole.log?sig=${vm.sig}` } };
    }
    if (action === 'start' && method === 'POST') {
      const op = startOperation(COMPUTE, () => {
        vm.power = 'running';
      });
      vm.power = 'starting';
      return { status: 202, headers: operationHeaders(op, apiVersion) };
    }
    if (action === 'deallocate' && method === 'POST') {
      const op = startOperation(COMPUTE, () => {
        vm.power = 'deallocated';
      });
      return { status: 202, headers: operationHeaders(op, apiVersion) };
    }
    throw new ArmError(404, 'InvalidResourceType', `No action ${action} on virtualMachines.`);
  }

  const arm = https.createServer({ key: tls.key, cert: tls.cert }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url!, 'https://127.0.0.1');
      const raw = Buffer.concat(chunks).toString('utf8');
      let body: unknown;
      const record: StandinRequest = { method: req.method!, path: url.pathname, apiVersion: url.searchParams.get('api-version') ?? undefined, status: 0 };
      void (async () => {
        try {
          if (raw) {
            try {
              body = JSON.parse(raw);
            } catch {
              throw new ArmError(400, 'InvalidRequestContent', 'The request content was invalid and could not be deserialized.');
            }
          }
          record.body = body;
          const r = await handle(req.method!, url, body, req.headers);
          record.status = r.status;
          if (r.text !== undefined) res.writeHead(r.status, { 'content-type': 'text/plain', ...r.headers }).end(r.text);
          else res.writeHead(r.status, { 'content-type': 'application/json; charset=utf-8', 'x-ms-request-id': randomUUID(), ...r.headers }).end(r.body === undefined ? '' : JSON.stringify(r.body));
        } catch (err) {
          const e = err instanceof ArmError ? err : new ArmError(500, 'InternalServerError', (err as Error).message);
          record.status = e.status;
          const headers: Record<string, string> = { 'content-type': 'application/json; charset=utf-8', 'x-ms-failure-cause': 'gateway' };
          const retryAfter = (e as { retryAfter?: number }).retryAfter;
          if (retryAfter !== undefined) headers['retry-after'] = String(retryAfter);
          res.writeHead(e.status, headers).end(JSON.stringify({ error: { code: e.code, message: e.message, ...(e.target ? { target: e.target } : {}) } }));
        } finally {
          requests.push(record);
        }
      })();
    });
  });

  // App Service managed identity (what DefaultAzureCredential's ManagedIdentityCredential calls with IDENTITY_ENDPOINT).
  const msi = http.createServer((req, res) => {
    const url = new URL(req.url!, 'http://127.0.0.1');
    if (url.pathname !== '/msi/token' || req.headers['x-identity-header'] !== identityHeader || url.searchParams.get('api-version') !== '2019-08-01' || !url.searchParams.get('resource')) {
      res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ statusCode: 400, message: 'bad managed identity request' }));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ access_token: token, expires_on: String(Math.floor(Date.now() / 1000) + 3600), resource: url.searchParams.get('resource'), token_type: 'Bearer', client_id: '00000000-0000-0000-0000-00000000c0de' }));
  });

  await new Promise<void>((r) => arm.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => msi.listen(0, '127.0.0.1', r));
  base = `https://127.0.0.1:${(arm.address() as AddressInfo).port}`;
  const msiUrl = `http://127.0.0.1:${(msi.address() as AddressInfo).port}/msi/token`;

  const typeOf = (t: string): keyof typeof API_VERSIONS => {
    const found = Object.keys(API_VERSIONS).find((k) => k.split('/')[1]!.toLowerCase() === t.toLowerCase());
    if (!found) throw new Error(`unknown type ${t}`);
    return found as keyof typeof API_VERSIONS;
  };

  return {
    env: { KUBEDOS_AZURE_ARM_ENDPOINT: base, KUBEDOS_AZURE_ARM_CA_FILE: tls.caFile, IDENTITY_ENDPOINT: msiUrl, IDENTITY_HEADER: identityHeader },
    requests,
    resource(rg, typeAndName) {
      const [t, n] = typeAndName.split('/') as [string, string];
      const type = typeOf(t);
      const r = get(idOf(rg, type.split('/')[0]!, type.split('/')[1]!, n));
      return r ? view(r, 'instanceView') : undefined;
    },
    names(rg, t) {
      const type = typeOf(t);
      return [...resources.values()].filter((r) => r.type === type && r.id.toLowerCase().includes(`/resourcegroups/${rg.toLowerCase()}/`)).map((r) => r.name).sort();
    },
    inject(fault) {
      faults.push({ ...fault, left: fault.times ?? 1 });
    },
    clearFaults() {
      faults.length = 0;
    },
    failProvisioning(vmName, code, message) {
      failedProvisioning.set(vmName, { code, message });
    },
    ovfEnv(rg, vmName) {
      const r = get(idOf(rg, COMPUTE, 'virtualMachines', vmName));
      if (!r) throw new Error(`no VM ${vmName}`);
      const os = (r.body.properties as { osProfile: { computerName: string; adminUsername: string; linuxConfiguration?: { ssh?: { publicKeys?: Array<{ keyData: string }> } } } }).osProfile;
      return ovfEnvXml({ hostname: os.computerName, adminUsername: os.adminUsername, sshPublicKeys: (os.linuxConfiguration?.ssh?.publicKeys ?? []).map((k) => k.keyData), customDataBase64: r.customData });
    },
    put(rg, typeAndName, body) {
      const [t, n] = typeAndName.split('/') as [string, string];
      const type = typeOf(t);
      const id = idOf(rg, type.split('/')[0]!, type.split('/')[1]!, n);
      resources.set(id.toLowerCase(), { id, type, name: n, body: structuredClone(body), power: 'running' });
    },
    async close() {
      const closed = Promise.all([new Promise((r) => arm.close(r)), new Promise((r) => msi.close(r))]);
      arm.closeAllConnections();
      msi.closeAllConnections();
      await closed;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
