/**
 * Types of the parsed platform spec, inferred from the schema so they cannot drift from it.
 *
 * A loaded spec is deep-frozen, and these types say so: everything is `readonly`. Durations are
 * milliseconds and sizes are bytes (see quantities.ts); every default is filled in.
 * Type-only module: workflow code may import it.
 */
import type { z } from 'zod';
import type { TargetType } from '../targets';
import type { specSchema } from './schema';
import type { HostSpec, SshConnectionSpec } from './target-fields';

export type { PayloadFile } from './schema';
export type { Milliseconds, Bytes } from './quantities';
export type { Architecture, Component, Distro, HealthCheckType, ScheduleAction, Suite } from './catalog';
export type { FormatName, TargetType } from './plugins';

/** `T` with every nested property and element readonly (tuples stay tuples). */
export type DeepReadonly<T> = T extends (...args: never[]) => unknown
  ? T
  : T extends readonly unknown[]
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T extends object
      ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
      : T;

/** The spec as written in YAML (before defaults and parsing), e.g. for building one in code. */
export type SpecInput = z.input<typeof specSchema>;

/** A parsed, fully defaulted, deep-frozen platform spec. */
export type Spec = DeepReadonly<z.output<typeof specSchema>>;

/** `base`: the distribution every image starts from. `packages` already includes the defaults. */
export type BaseSpec = Spec['base'];
/** One entry of `images`. */
export type ImageSpec = Spec['images'][string];
/** A systemd unit of an image. */
export type SystemdUnit = ImageSpec['units'][number];
/** A first-boot script of an image. */
export type FirstBootScript = ImageSpec['firstBoot'][number];
/** One entry of `targets`, discriminated on `type`. */
export type TargetSpec = Spec['targets'][string];
/** The target variant of one type, e.g. `TargetOf<'proxmox'>`. */
export type TargetOf<T extends TargetType> = Extract<TargetSpec, { readonly type: T }>;
/** Where a driver runs its tools: this machine or an SSH host. */
export type HostRef = DeepReadonly<HostSpec>;
/** An SSH connection with a pinned host key (`hostKey` or `knownHosts` is always set). */
export type SshConnection = DeepReadonly<SshConnectionSpec>;
/** One entry of `fleets`. */
export type FleetSpec = Spec['fleets'][string];
/** How a fleet is rolled onto a new image. */
export type RolloutPolicy = FleetSpec['rollout'];
/** A fleet's health check, discriminated on `type`; `timeout` and `interval` are milliseconds. */
export type HealthCheck = FleetSpec['healthCheck'];
/** One entry of `schedules`; `fleets` is filled with every fleet when the spec omits it. */
export type ScheduleSpec = Spec['schedules'][string];
