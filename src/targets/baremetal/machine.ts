/**
 * One machine as its BMC shows it through Redfish: its ComputerSystem (power, boot override,
 * reset), its virtual CD, its drives. Resources are found by following the service's own links
 * (`VirtualMedia` of the system, else of the manager that manages it; each action's `target`),
 * with the DMTF-standard paths only as a fallback, so BMCs that lay them out differently work.
 *
 * Quirks handled here:
 * - `BootSourceOverrideEnabled: Once` is not honoured by every BMC (sushy-tools stores every
 *   override as Continuous): the driver always sets the override it needs before a power-on, and
 *   `clearBootOverride` after boot falls back to a persistent boot from disk where `Disabled` is
 *   refused or does not stick.
 * - Media is changed only while the machine is off: some BMCs (and libvirt behind sushy) apply a
 *   change to a running machine only at its next power cycle.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { RedfishError } from '../../errors';
import { logger } from '../../log';
import type { RedfishCallContext, RedfishClient } from './redfish';

type Json = Record<string, unknown>;

/** How long an InsertMedia may take to be answered. */
const INSERT_TIMEOUT_MS = 15 * 60_000;

export type PowerState = 'On' | 'Off' | 'PoweringOn' | 'PoweringOff' | 'Paused' | string;

export interface BootOverride {
  enabled: string;
  target: string;
}

export interface MediaState {
  image: string;
  inserted: boolean;
}

function odataId(value: unknown): string | undefined {
  const id = (value as { '@odata.id'?: unknown } | undefined)?.['@odata.id'];
  return typeof id === 'string' ? id : undefined;
}

function actionTarget(resource: Json, action: string, fallback: string): string {
  const actions = resource.Actions as Record<string, { target?: unknown }> | undefined;
  const target = actions?.[action]?.target;
  return typeof target === 'string' ? target : fallback;
}

export class BmcMachine {
  private systemPath?: string;
  private cdPath?: string;

  constructor(
    readonly name: string,
    readonly client: RedfishClient,
    /** The inventory's `system`, when it names one. */
    private readonly configuredSystem?: string,
  ) {}

  /** The ComputerSystem's path: the configured one, else the BMC's only system. */
  async system(ctx: RedfishCallContext = {}): Promise<string> {
    if (this.systemPath) return this.systemPath;
    if (this.configuredSystem) {
      this.systemPath = this.configuredSystem.startsWith('/') ? this.configuredSystem : `/redfish/v1/Systems/${this.configuredSystem}`;
      return this.systemPath;
    }
    const collection = await this.client.get('/redfish/v1/Systems', ctx);
    const members = ((collection.Members as unknown[]) ?? []).map(odataId).filter((m): m is string => m !== undefined);
    if (members.length !== 1) {
      throw new RedfishError(this.name, 'GET /redfish/v1/Systems', 200, `the BMC manages ${members.length} systems (${members.slice(0, 5).join(', ')}): name this machine's with \`system\` in the inventory`);
    }
    this.systemPath = members[0]!;
    return this.systemPath;
  }

  async resource(ctx: RedfishCallContext = {}): Promise<Json> {
    return this.client.get(await this.system(ctx), ctx);
  }

  async power(ctx: RedfishCallContext = {}): Promise<PowerState> {
    return String((await this.resource(ctx)).PowerState ?? 'unknown');
  }

  async bootOverride(ctx: RedfishCallContext = {}): Promise<BootOverride> {
    const boot = ((await this.resource(ctx)).Boot ?? {}) as Json;
    return { enabled: String(boot.BootSourceOverrideEnabled ?? 'Disabled'), target: String(boot.BootSourceOverrideTarget ?? 'None') };
  }

  async reset(type: 'On' | 'ForceOff' | 'ForceRestart', ctx: RedfishCallContext = {}): Promise<void> {
    const system = await this.system(ctx);
    const target = actionTarget(await this.client.get(system, ctx), '#ComputerSystem.Reset', `${system}/Actions/ComputerSystem.Reset`);
    await this.client.action(target, { ResetType: type }, ctx);
  }

  /** Power off (hard) and wait until the BMC reports it off. */
  async powerOff(ctx: RedfishCallContext = {}, timeoutMs = 120_000): Promise<void> {
    if ((await this.power(ctx)) === 'Off') return;
    await this.reset('ForceOff', ctx);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const state = await this.power(ctx);
      if (state === 'Off') return;
      if (Date.now() > deadline) throw new RedfishError(this.name, 'ComputerSystem.Reset ForceOff', 200, `the machine still reports ${state} after ${Math.round(timeoutMs / 1000)} s`, { retryable: true });
      ctx.progress?.({ step: `${this.name}: waiting for power off (${state})` });
      await sleep(1_000);
    }
  }

  /** Set the next boot source (`Once`; see the file comment for BMCs that keep it). */
  async bootFrom(target: 'Cd' | 'Pxe' | 'Hdd', ctx: RedfishCallContext = {}): Promise<void> {
    await this.client.patch(await this.system(ctx), { Boot: { BootSourceOverrideTarget: target, BootSourceOverrideEnabled: 'Once' } }, ctx);
  }

  /**
   * After a boot: no override left that would boot the installer or the network again. `Disabled`
   * where the BMC takes it; where it refuses or keeps reporting an override, boot from disk.
   * Returns what the machine was left with.
   */
  async clearBootOverride(ctx: RedfishCallContext = {}): Promise<'disabled' | 'disk'> {
    const before = await this.bootOverride(ctx);
    if (before.enabled === 'Disabled') return 'disabled';
    const system = await this.system(ctx);
    try {
      await this.client.patch(system, { Boot: { BootSourceOverrideEnabled: 'Disabled' } }, ctx);
      if ((await this.bootOverride(ctx)).enabled === 'Disabled') return 'disabled';
    } catch (err) {
      if (!(err instanceof RedfishError) || err.status >= 500) throw err;
      logger.debug({ machine: this.name, err: err.message }, 'the BMC refuses BootSourceOverrideEnabled: Disabled');
    }
    const now = await this.bootOverride(ctx);
    if (now.target !== 'Hdd') await this.client.patch(system, { Boot: { BootSourceOverrideTarget: 'Hdd', BootSourceOverrideEnabled: 'Continuous' } }, ctx);
    logger.info({ machine: this.name, was: now }, 'the BMC keeps boot overrides: left set to boot from disk');
    return 'disk';
  }

  /** The virtual CD: a VirtualMedia member of the system (else of its manager) that takes CD or DVD. */
  async cd(ctx: RedfishCallContext = {}): Promise<string> {
    if (this.cdPath) return this.cdPath;
    const system = await this.resource(ctx);
    const collections: string[] = [];
    const own = odataId(system.VirtualMedia);
    if (own) collections.push(own);
    const managers = ((system.Links as Json | undefined)?.ManagedBy as unknown[] | undefined)?.map(odataId).filter((m): m is string => m !== undefined) ?? [];
    for (const manager of managers) {
      const vm = odataId((await this.client.get(manager, ctx)).VirtualMedia);
      if (vm && !collections.includes(vm)) collections.push(vm);
    }
    for (const collection of collections) {
      for (const member of ((await this.client.get(collection, ctx)).Members as unknown[] | undefined) ?? []) {
        const path = odataId(member);
        if (!path) continue;
        const device = await this.client.get(path, ctx);
        const types = (device.MediaTypes as unknown[] | undefined) ?? [];
        if (types.some((t) => t === 'CD' || t === 'DVD')) {
          this.cdPath = path;
          return path;
        }
      }
    }
    throw new RedfishError(this.name, `GET ${collections.join(', ') || `${await this.system(ctx)} (no VirtualMedia)`}`, 200, 'the BMC offers no virtual CD/DVD: use provisioning: pxe for this machine');
  }

  async media(ctx: RedfishCallContext = {}): Promise<MediaState> {
    const device = await this.client.get(await this.cd(ctx), ctx);
    return { image: typeof device.Image === 'string' ? device.Image : '', inserted: device.Inserted === true };
  }

  async insert(image: string, ctx: RedfishCallContext = {}): Promise<void> {
    const cd = await this.cd(ctx);
    const target = actionTarget(await this.client.get(cd, ctx), '#VirtualMedia.InsertMedia', `${cd}/Actions/VirtualMedia.InsertMedia`);
    // Some BMCs (sushy-tools among them) download the whole image before they answer.
    await this.client.action(target, { Image: image, Inserted: true, WriteProtected: true }, { ...ctx, timeoutMs: Math.max(ctx.timeoutMs ?? 0, INSERT_TIMEOUT_MS) });
  }

  /** Eject whatever the virtual CD holds (nothing to do when it is empty). */
  async eject(ctx: RedfishCallContext = {}): Promise<void> {
    const cd = await this.cd(ctx);
    const device = await this.client.get(cd, ctx);
    if (device.Inserted !== true && !device.Image) return;
    await this.client.action(actionTarget(device, '#VirtualMedia.EjectMedia', `${cd}/Actions/VirtualMedia.EjectMedia`), {}, ctx);
  }

  /** Drive.SecureErase on every drive of every Storage of the system (each a task, followed to its end). */
  async secureErase(ctx: RedfishCallContext = {}): Promise<string[]> {
    const system = await this.resource(ctx);
    const storage = odataId(system.Storage);
    if (!storage) throw new RedfishError(this.name, `GET ${await this.system(ctx)}`, 200, 'the BMC lists no Storage, so it cannot secure-erase: set wipe: none');
    const erased: string[] = [];
    for (const member of ((await this.client.get(storage, ctx)).Members as unknown[] | undefined) ?? []) {
      const path = odataId(member);
      if (!path) continue;
      for (const drive of ((await this.client.get(path, ctx)).Drives as unknown[] | undefined) ?? []) {
        const drivePath = odataId(drive);
        if (!drivePath) continue;
        const resource = await this.client.get(drivePath, ctx);
        const actions = resource.Actions as Record<string, unknown> | undefined;
        if (!actions?.['#Drive.SecureErase']) throw new RedfishError(this.name, `GET ${drivePath}`, 200, 'this drive offers no #Drive.SecureErase: set wipe: none for this target');
        ctx.progress?.({ step: `${this.name}: secure erase of ${drivePath}` });
        await this.client.action(actionTarget(resource, '#Drive.SecureErase', `${drivePath}/Actions/Drive.SecureErase`), {}, ctx);
        erased.push(drivePath);
      }
    }
    return erased;
  }
}
