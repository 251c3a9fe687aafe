/**
 * What a target type is, said once beside its driver: the spec schema users write, the formats
 * it deploys, the worker pool that runs it and the tools that pool needs there, and how to make
 * its driver. The spec's target union, the JSON Schema, help text, the pool routing, every
 * worker's activity registration and `kubedos doctor`'s table are derived from these.
 *
 * A descriptor module (`src/targets/<type>/index.ts`) stays light: the driver is loaded on first
 * use, so validating a spec never loads an SDK or an SSH stack.
 */
import type { z } from 'zod';
import type { FormatName } from '../foundry/formats';
import type { DeepReadonly } from '../platform/types';
import type { PoolName } from '../pools/pools';
import type { DriverEnvironment, TargetDriver } from './driver';

/** A fixed number of places a target offers (VM ids, machines), read from the raw spec value. */
export interface TargetSlots {
  count: number;
  /** The field that bounds them, e.g. `vmidRange`. */
  field: string;
  /** How the message describes them, e.g. `vmidRange [9000, 9999] holds 1000 VMs`. */
  what: string;
}

export interface TargetDescriptor<Type extends string = string, Schema extends z.ZodType = z.ZodType> {
  /** The spec's `type:` value, e.g. `qemu`. */
  readonly type: Type;
  /** One line for help text and the JSON Schema. */
  readonly description: string;
  /** Formats the driver deploys, preferred first (the spec suggests the first); `any` when it needs no bytes. */
  readonly accepts: readonly FormatName[] | 'any';
  /**
   * What one target of this type deploys given its settings (read from the raw spec value), a
   * subset of `accepts` in order of preference; e.g. a setting that picks between an installer
   * ISO and a network-boot bundle. @default accepts
   */
  deploys?(raw: Record<string, unknown>): readonly FormatName[];
  /** The worker pool whose task queue runs this type's deploy activities. */
  readonly pool: PoolName;
  /** The target's spec: a strict object whose `type` is the literal above. */
  readonly schema: Schema;
  /** Executables the pool's host must have to run this driver. */
  readonly tools: readonly string[];
  /** Files the pool's host must have (firmware). */
  readonly files?: readonly string[];
  /** A fixed capacity, so `validate` can refuse fleets that cannot fit. */
  slots?(raw: Record<string, unknown>): TargetSlots | undefined;
  /** The driver, loaded on first use. */
  load(): Promise<DriverFactory<DeepReadonly<z.output<Schema>>>>;
}

/** Makes a driver for one named target of the spec. */
export type DriverFactory<Spec> = (name: string, spec: Spec, env: DriverEnvironment) => TargetDriver;

/** Identity function that keeps the literal `type` (and the schema's type) of a descriptor. */
export function defineTarget<const Type extends string, Schema extends z.ZodType>(descriptor: TargetDescriptor<Type, Schema>): TargetDescriptor<Type, Schema> {
  return descriptor;
}
