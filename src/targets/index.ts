/**
 * The target-driver registry: one line per substrate. Drivers for types not listed here are
 * refused with the list of what this build supports.
 */
import path from 'node:path';
import { stateDir } from '../config/paths';
import { ConfigError } from '../errors';
import type { TargetSpec, TargetType } from '../platform/types';
import type { DriverEnvironment, DriverFactory, TargetDriver } from './driver';
import { HollowDriver } from './hollow';
import { ProxmoxDriver } from './proxmox';
import { QemuDriver } from './qemu';

export type { TargetDriver } from './driver';

const DRIVERS: Partial<Record<TargetType, DriverFactory<never>>> = {
  hollow: (name, spec: Extract<TargetSpec, { type: 'hollow' }>, env) => new HollowDriver(name, spec, env),
  qemu: (name, spec: Extract<TargetSpec, { type: 'qemu' }>, env) => new QemuDriver(name, spec, env),
  proxmox: (name, spec: Extract<TargetSpec, { type: 'proxmox' }>, env) => new ProxmoxDriver(name, spec, env),
};

export function supportedTargetTypes(): TargetType[] {
  return Object.keys(DRIVERS) as TargetType[];
}

/** Local state for a target: $KUBEDOS_HOME/targets/<name>. */
export function defaultDriverEnvironment(targetName: string): DriverEnvironment {
  return { stateDir: path.join(stateDir(), 'targets', targetName) };
}

export function createDriver(name: string, spec: TargetSpec, env: DriverEnvironment = defaultDriverEnvironment(name)): TargetDriver {
  const factory = DRIVERS[spec.type] as DriverFactory | undefined;
  if (!factory) {
    throw new ConfigError(
      `targets.${name}: target type "${spec.type}" has no driver in this build`,
      `use one of: ${supportedTargetTypes().join(', ')}`,
    );
  }
  return factory(name, spec, env);
}
