/**
 * A platform's schedules as definitions: the spec's `schedules:` entry with command-line
 * overrides, checked (cron, time zone, action, fleets), the images each run manufactures and the
 * fleets it rolls them onto, and the ids under which Temporal keeps the schedule and its runs.
 * Pure: src/cli/commands/schedule.ts stages the plans and calls the Temporal client.
 */
import { ConfigError } from '../errors';
import { cronProblem } from './cron';
import { selectFleets } from './fleets';
import type { ScheduleSpec, Spec } from './types';

/** What a cron mistake's hint says. */
export const CRON_HINT = 'five fields: minute hour day-of-month month day-of-week, e.g. --cron "0 3 * * *" (03:00 every day)';

/** Id of a platform's schedule: `schedule/<platform>/<name>`. */
export function scheduleId(platform: string, name: string): string {
  return `schedule/${platform}/${name}`;
}

/** Platform and name of a schedule id made by scheduleId; undefined for another schedule. */
export function parseScheduleId(id: string): { platform: string; name: string } | undefined {
  const m = /^schedule\/([^/]+)\/([^/]+)$/.exec(id);
  return m ? { platform: m[1]!, name: m[2]! } : undefined;
}

/** Workflow id prefix of the runs a schedule starts (Temporal appends the scheduled time). */
export function scheduledWorkflowId(platform: string, name: string): string {
  return `rebuild-herd/${platform}/${name}`;
}

/** A schedule as the spec and the command line define it. */
export interface ScheduleDefinition {
  platform: string;
  name: string;
  cron: string;
  timezone: string;
  action: ScheduleSpec['action'];
  fleets: string[];
  paused: boolean;
}

/** Command-line values that replace the spec's (each checked as the spec's are at load). */
export interface ScheduleOverrides {
  cron?: string;
  timezone?: string;
  fleets?: string[];
  paused?: boolean;
}

function checkCron(cron: string, option: string): void {
  const problem = cronProblem(cron);
  if (problem) throw new ConfigError(`${option}: ${problem}`, CRON_HINT);
}

function checkTimezone(zone: string, option: string): void {
  try {
    new Intl.DateTimeFormat('en', { timeZone: zone });
  } catch {
    throw new ConfigError(`${option}: unknown time zone "${zone}"`, 'an IANA name such as UTC or Europe/Berlin');
  }
}

/** The spec's schedule `name`, with command-line overrides, checked. */
export function scheduleDefinition(spec: Spec, name: string, overrides: ScheduleOverrides = {}): ScheduleDefinition {
  if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(name)) throw new ConfigError(`schedule name "${name}" is not a DNS label`, 'lower-case letters, digits and dashes, e.g. nightly');
  const entry = spec.schedules[name];
  const cron = overrides.cron ?? entry?.cron;
  if (!cron) {
    const known = Object.keys(spec.schedules);
    throw new ConfigError(
      `the spec defines no schedule "${name}", so --cron is needed`,
      `give --cron "0 3 * * *"${known.length ? `, or use one of the spec's schedules: ${known.join(', ')}` : ', or add it under schedules: in the spec'}`,
    );
  }
  if (overrides.cron !== undefined) checkCron(overrides.cron, '--cron');
  const timezone = overrides.timezone ?? entry?.timezone ?? 'UTC';
  if (overrides.timezone !== undefined) checkTimezone(overrides.timezone, '--timezone');
  const scheduleAction = entry?.action ?? 'rebuildHerd';
  if (scheduleAction === 'rollout') {
    throw new ConfigError(
      `schedules.${name}.action: "rollout" (roll out without rebuilding) is not supported yet`,
      'use action: rebuildHerd: a build whose inputs did not change is found and reused, so only what changed is rebuilt',
    );
  }
  const fleets = [...(overrides.fleets ?? entry?.fleets ?? Object.keys(spec.fleets).sort())];
  if (fleets.length) selectFleets(spec, fleets);
  else if (scheduleAction === 'rebuildHerd') throw new ConfigError(`schedule ${name} acts on no fleets: the spec defines none`, 'add fleets: to the spec, or use action: build');
  return { platform: spec.metadata.name, name, cron, timezone, action: scheduleAction, fleets, paused: overrides.paused || entry?.paused || false };
}

/** The images a schedule manufactures, and the fleets each then rolls onto (none for `build`). */
export function herdImages(spec: Spec, def: ScheduleDefinition): { image: string; fleets: string[] }[] {
  const images = def.fleets.length ? [...new Set(def.fleets.map((f) => spec.fleets[f]!.image))].sort() : Object.keys(spec.images).sort();
  return images.map((image) => ({ image, fleets: def.action === 'build' ? [] : def.fleets.filter((f) => spec.fleets[f]!.image === image) }));
}
