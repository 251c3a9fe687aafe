/**
 * Boot the shared test image's cloud artifacts under QEMU (q35, OVMF, TCG) as their cloud would
 * present them to the guest, with loopback STAND-INS of the provider's guest-facing services
 * reached through QEMU's guestfwd (each connection handed to a fresh stand-in process):
 *
 * - Azure: the fixed VHD as it is (format vpc), Azure's DMI (chassis asset tag, Microsoft
 *   Corporation / Virtual Machine), provisioning media (an ISO 9660 CD-ROM holding ovf-env.xml with
 *   the node's custom data, as cloud-init also accepts), and the WireServer stand-in at
 *   168.63.129.16:80 on a user-mode network 168.63.129.0/24 (the guest gets its address by DHCP).
 * - GCE: disk.raw extracted from the tar.gz with GNU tar, GCE's DMI (Google / Google Compute
 *   Engine), and the metadata server stand-in at 169.254.169.254:80 on 169.254.0.0/16.
 *
 * The console is watched for marks (first-seen wall time from QEMU's start, ~50 ms resolution)
 * until `kubedos: ready <hostname>` and what the stand-in must have seen. Used by
 * test/e2e/cloud-firstboot.test.ts (what happens) and bench/cloud-firstboot.ts (how long).
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { AZURE_CHASSIS_ASSET_TAG, AZURE_WIRESERVER } from '../../src/foundry/azure-reader';
import { GCE_PRODUCT_NAME } from '../../src/foundry/gce-reader';
import { qemuMachine } from '../../src/foundry/tools/qemu-system';
import { OVMF_CODE, OVMF_VARS } from '../../src/targets/qemu';
import type { NodeIdentity } from '../../src/targets/identity';
import { renderNocloud } from '../../src/targets/nocloud';
import { ovfEnvXml } from './azure-standin/ovf-env';
import type { BuiltImage } from './images';

const run = promisify(execFile);

export interface CloudBoot {
  /** The whole serial console. */
  log: string;
  /** Mark → ms after QEMU started when it was first seen. */
  marks: Record<string, number>;
  /** What the stand-in was asked, one JSON object per request. */
  standinLog: Array<Record<string, unknown>>;
  /** Whether every expected mark was seen before the deadline. */
  complete: boolean;
}

async function watch(serial: string, standinLogFile: string, marks: Record<string, RegExp>, done: (seen: Record<string, number>, standin: Array<Record<string, unknown>>) => boolean, exited: () => boolean, started: number, timeoutMs: number): Promise<CloudBoot> {
  const seen: Record<string, number> = {};
  let log = '';
  let standinLog: Array<Record<string, unknown>> = [];
  while (Date.now() - started < timeoutMs && !exited()) {
    log = await fs.readFile(serial, 'utf8').catch(() => '');
    for (const [mark, re] of Object.entries(marks)) if (seen[mark] === undefined && re.test(log)) seen[mark] = Date.now() - started;
    standinLog = (await fs.readFile(standinLogFile, 'utf8').catch(() => '')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    if (done(seen, standinLog)) return { log, marks: seen, standinLog, complete: true };
    await new Promise((r) => setTimeout(r, 50));
  }
  return { log, marks: seen, standinLog, complete: false };
}

async function withMachine(dir: string, start: (ovmfVars: string, serial: string, signal: AbortSignal) => Promise<unknown>, watchIt: (serial: string, exited: () => boolean, started: number) => Promise<CloudBoot>): Promise<CloudBoot> {
  const vars = path.join(dir, 'OVMF_VARS.fd');
  await fs.copyFile(OVMF_VARS, vars);
  const serial = path.join(dir, 'serial.log');
  const abort = new AbortController();
  const started = Date.now();
  let exited = false;
  const qemu = start(vars, serial, abort.signal).catch((err: unknown) => err);
  void qemu.then(() => (exited = true));
  try {
    return await watchIt(serial, () => exited, started);
  } finally {
    abort.abort();
    await qemu;
  }
}

/** Console lines that start each first-boot step: the hooks in order, then the host keys. */
const HOOK_MARKS: Record<string, RegExp> = {
  kernel: /Linux version/,
  nocloudHook: /kubedos: metadata \S*10-nocloud/,
  mmdsHook: /kubedos: metadata \S*20-mmds/,
  azureHook: /kubedos: metadata \S*30-azure/,
  gceHook: /kubedos: metadata \S*40-gce/,
  hostkeys: /kubedos: hostkey /,
  firstbootDone: /kubedos: firstboot done/,
};

const standinCommand = (script: string, ...args: string[]) => [process.execPath, path.join(__dirname, script), ...args].join(' ');

export interface AzureBootOptions {
  nodeId: string;
  identity: NodeIdentity;
  authorizedKeys: readonly string[];
  timeoutMs?: number;
}

/** Boot the azure artifact as an Azure VM would start (see the file comment). */
export async function bootAzure(img: BuiltImage, o: AzureBootOptions): Promise<CloudBoot & { goal: { incarnation: number; containerId: string; instanceId: string } }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-azure-boot-'));
  try {
    const userData = renderNocloud({ instanceId: o.nodeId, identity: o.identity, authorizedKeys: o.authorizedKeys })['user-data'];
    const media = path.join(dir, 'media');
    await fs.mkdir(media);
    await fs.writeFile(path.join(media, 'ovf-env.xml'), ovfEnvXml({ hostname: o.identity.hostname, adminUsername: 'kubedos', sshPublicKeys: o.authorizedKeys, customDataBase64: Buffer.from(userData).toString('base64') }));
    const iso = path.join(dir, 'provisioning.iso');
    await run('xorriso', ['-no_rc', '-as', 'mkisofs', '-quiet', '-o', iso, '-V', 'rd_rdfe_stable', '-J', '-r', media]);
    const goal = { incarnation: 1, containerId: randomUUID(), instanceId: `${randomUUID().replace(/-/g, '')}.${o.nodeId}` };
    const state = path.join(dir, 'goal.json');
    await fs.writeFile(state, JSON.stringify(goal));
    const wireLog = path.join(dir, 'wireserver.log');
    const ready = new RegExp(`^kubedos: ready ${o.identity.hostname}\\r?$`, 'm');
    const marks: Record<string, RegExp> = {
      ...HOOK_MARKS,
      media: /kubedos: azure: provisioning media on/,
      identity: /kubedos: nocloud: applied instance-id/,
      reported: /kubedos: azure: reported ready to the WireServer/,
      ready,
    };
    const boot = await withMachine(
      dir,
      (ovmfVars, serialLog, signal) =>
        qemuMachine(
          {
            firmware: { ovmfCode: OVMF_CODE, ovmfVars },
            cdrom: iso,
            disks: [{ file: img.artifacts.azure!, format: 'vpc', snapshot: true }],
            net: { network: '168.63.129.0/24', restrict: true, guestForwards: [{ address: AZURE_WIRESERVER, port: 80, command: standinCommand('azure-standin/wireserver.cjs', state, wireLog) }] },
            smbios: ['type=1,manufacturer=Microsoft Corporation,product=Virtual Machine,version=7.0', `type=3,manufacturer=Microsoft Corporation,asset=${AZURE_CHASSIS_ASSET_TAG}`],
            uuid: randomUUID(),
            boot: 'disk',
            serialLog,
            memoryMiB: 1024,
            cpus: 2,
          },
          { signal },
        ),
      (serial, exited, started) => watch(serial, wireLog, marks, (seen, wire) => seen.ready !== undefined && seen.reported !== undefined && wire.some((w) => (w.report as { state?: string } | undefined)?.state === 'Ready'), exited, started, o.timeoutMs ?? 300_000),
    );
    return { ...boot, goal };
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

export interface GceBootOptions {
  nodeId: string;
  identity: NodeIdentity;
  authorizedKeys: readonly string[];
  instanceId: string;
  timeoutMs?: number;
}

/** Boot the gce artifact as a Compute Engine instance would start (see the file comment). */
export async function bootGce(img: BuiltImage, o: GceBootOptions): Promise<CloudBoot> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-gce-boot-'));
  try {
    await run('tar', ['-xSzf', img.artifacts.gce!, '-C', dir]);
    const disk = path.join(dir, 'disk.raw');
    if (!existsSync(disk)) throw new Error('the gce artifact holds no disk.raw');
    const userData = renderNocloud({ instanceId: o.nodeId, identity: o.identity, authorizedKeys: o.authorizedKeys })['user-data'];
    const doc = path.join(dir, 'metadata.json');
    await fs.writeFile(doc, JSON.stringify({ instance: { id: o.instanceId, name: o.nodeId, hostname: `${o.nodeId}.europe-west4-a.c.kubedos-test.internal`, attributes: { 'user-data': userData } } }));
    const mdLog = path.join(dir, 'metadata.log');
    const ready = new RegExp(`^kubedos: ready ${o.identity.hostname}\\r?$`, 'm');
    const marks: Record<string, RegExp> = {
      ...HOOK_MARKS,
      read: /kubedos: gce: read user-data of instance/,
      identity: /kubedos: nocloud: applied instance-id/,
      ready,
    };
    return await withMachine(
      dir,
      (ovmfVars, serialLog, signal) =>
        qemuMachine(
          {
            firmware: { ovmfCode: OVMF_CODE, ovmfVars },
            disks: [{ file: disk, format: 'raw', snapshot: true }],
            net: { network: '169.254.0.0/16', restrict: true, guestForwards: [{ address: '169.254.169.254', port: 80, command: standinCommand('gce-standin/metadata.cjs', doc, mdLog) }] },
            smbios: [`type=1,manufacturer=Google,product=${GCE_PRODUCT_NAME},serial=GoogleCloud-${o.instanceId}`],
            uuid: randomUUID(),
            boot: 'disk',
            serialLog,
            memoryMiB: 1024,
            cpus: 2,
          },
          { signal },
        ),
      (serial, exited, started) => watch(serial, mdLog, marks, (seen) => seen.ready !== undefined, exited, started, o.timeoutMs ?? 300_000),
    );
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}
