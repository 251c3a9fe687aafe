/**
 * The target-driver registry, derived from ./registry.ts: the types this build deploys to, the
 * pool that runs each, and their drivers (loaded on first use). Nothing here is per-type.
 */
import path from 'node:path';
import type { z } from 'zod';
import { stateDir } from '../config/paths';
import { ConfigError } from '../errors';
import type { FormatName } from '../foundry/formats';
import type { PoolName } from '../pools/pools';
import type { DeepReadonly } from '../platform/types';
import type { TargetDescriptor } from './descriptor';
import type { DriverEnvironment, TargetDriver } from './driver';
import * as registered from './registry';

export type { TargetDriver } from './driver';
export type { TargetDescriptor } from './descriptor';

type Registered = typeof registered;
type AnyDescriptor = Registered[keyof Registered];

/** Name of a target type, e.g. `qemu`. */
export type TargetType = AnyDescriptor['type'];
/** The parsed spec of one target type, e.g. `TargetSpecOf<'qemu'>`. */
export type TargetSpecOf<T extends TargetType> = DeepReadonly<z.output<Extract<AnyDescriptor, { type: T }>['schema']>>;
/** The parsed spec of any target. */
export type AnyTargetSpec = { [T in TargetType]: TargetSpecOf<T> }[TargetType];

/** Every registered target type's descriptor, in registry order. */
export const TARGETS: readonly TargetDescriptor<TargetType>[] = Object.values(registered) as readonly TargetDescriptor<TargetType>[];

const BY_TYPE = new Map<string, TargetDescriptor<TargetType>>(TARGETS.map((t) => [t.type, t]));

/** The types this build has drivers for. */
export function supportedTargetTypes(): TargetType[] {
  return TARGETS.map((t) => t.type);
}

/** Type guard for target type names from untyped input. */
export function isTargetType(value: unknown): value is TargetType {
  return typeof value === 'string' && BY_TYPE.has(value);
}

/** The descriptor of a type; a type this build has no driver for is a ConfigError naming those it has. */
export function targetDescriptor(type: string): TargetDescriptor<TargetType> {
  const found = BY_TYPE.get(type);
  if (!found) throw new ConfigError(`target type "${type}" has no driver in this build`, `this build deploys to ${supportedTargetTypes().join(', ')}`);
  return found;
}

/** The pool whose task queue runs a target type's deploy activities. */
export function poolOfTarget(type: TargetType): PoolName {
  return targetDescriptor(type).pool;
}

/** Target types a pool runs. */
export function targetsOfPool(pool: PoolName): TargetDescriptor<TargetType>[] {
  return TARGETS.filter((t) => t.pool === pool);
}

/** The formats one target deploys with its settings (its descriptor's `deploys`), else all the type accepts. */
export function deployedFormats(type: TargetType, settings?: Record<string, unknown>): readonly FormatName[] | 'any' {
  const descriptor = targetDescriptor(type);
  return settings && descriptor.deploys ? descriptor.deploys(settings) : descriptor.accepts;
}

/**
 * The artifact a fleet on this target deploys: the first format the driver accepts that the image
 * outputs; undefined when the driver needs no bytes. The spec check (references.ts) already made
 * sure there is one.
 */
export function deployFormat(type: TargetType, outputs: readonly string[], settings?: Record<string, unknown>): FormatName | undefined {
  const accepts = deployedFormats(type, settings);
  if (accepts === 'any') return undefined;
  const format = accepts.find((f) => outputs.includes(f));
  if (!format) throw new ConfigError(`a ${type} target deploys ${accepts.join(' or ')}, which the image does not output`, `add ${accepts[0]} to the image's outputs`);
  return format;
}

/** Local state for a target: $KUBEDOS_HOME/targets/<name>. */
export function defaultDriverEnvironment(targetName: string): DriverEnvironment {
  return { stateDir: path.join(stateDir(), 'targets', targetName) };
}

/** A driver for one named target of the spec (its module is loaded on first use). */
export async function createDriver(name: string, spec: AnyTargetSpec, env: DriverEnvironment = defaultDriverEnvironment(name)): Promise<TargetDriver> {
  const factory = await targetDescriptor(spec.type).load();
  return (factory as (n: string, s: AnyTargetSpec, e: DriverEnvironment) => TargetDriver)(name, spec, env);
}
