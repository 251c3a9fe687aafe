/**
 * Checks across sections: names that must refer to something, and pairs that must fit together
 * (an image's formats and the target it is deployed to). They read the raw YAML value rather than
 * the parsed spec so they run in the same pass as the schema, even when it found other problems;
 * anything of the wrong shape is skipped here because the schema already reports it.
 */
import { targetDescriptor } from '../targets';
import { acceptedFormats, DEFAULT_OUTPUTS, isFormatName, isTargetType, type FormatName, type TargetType } from './plugins';
import type { TargetSlots } from '../targets/descriptor';
import type { Finding } from './issues';
import { isRecord, listOf, show } from './show';
import { closest } from './suggest';

type Section = Record<string, unknown>;

function section(raw: Record<string, unknown>, key: string): Section {
  const value = raw[key];
  return isRecord(value) ? value : {};
}

function records(value: Section): [string, Record<string, unknown>][] {
  return Object.entries(value).filter((entry): entry is [string, Record<string, unknown>] => isRecord(entry[1]));
}

/** "no image named "wrker" (did you mean "worker"?); defined images: worker, master" */
function missingName(kind: string, wanted: string, defined: Section): string {
  const names = Object.keys(defined);
  if (names.length === 0) return `no ${kind} named ${show(wanted)}; no ${kind}s are defined`;
  const guess = closest(wanted, names);
  return `no ${kind} named ${show(wanted)}${guess ? ` (did you mean "${guess}"?)` : ''}; defined ${kind}s: ${names.join(', ')}`;
}

/** The formats an image will produce, with the schema's default when it lists none. */
function outputsOf(image: Record<string, unknown>): FormatName[] {
  return Array.isArray(image.outputs) ? image.outputs.filter(isFormatName) : [...DEFAULT_OUTPUTS];
}

function compatibility(fleet: string, imageName: string, image: Record<string, unknown>, targetName: string, target: Record<string, unknown> & { type: TargetType }): Finding | undefined {
  const { type } = target;
  const accepts = acceptedFormats(type, target);
  const outputs = outputsOf(image);
  // No known outputs at all is the schema's to report (empty list, unknown format names).
  if (accepts === 'any' || outputs.length === 0 || outputs.some((f) => accepts.includes(f))) return undefined;
  return {
    path: ['fleets', fleet, 'image'],
    message:
      `image "${imageName}" cannot be deployed to target "${targetName}": a ${type} target${accepts === acceptedFormats(type) ? '' : ' with its settings'} needs ${listOf([...accepts])} ` +
      `but the image outputs ${listOf(outputs, 'and')}; add ${accepts[0]} to images.${imageName}.outputs`,
  };
}

function fleetFindings(raw: Record<string, unknown>): Finding[] {
  const images = section(raw, 'images');
  const targets = section(raw, 'targets');
  // A section of the wrong shape is the schema's to report; names cannot be checked against it.
  const checkImages = isRecord(raw.images);
  const checkTargets = raw.targets === undefined || isRecord(raw.targets);
  const findings: Finding[] = [];
  for (const [name, fleet] of records(section(raw, 'fleets'))) {
    const { image, target } = fleet;
    if (checkImages && typeof image === 'string' && !(image in images)) findings.push({ path: ['fleets', name, 'image'], message: missingName('image', image, images) });
    if (checkTargets && typeof target === 'string' && !(target in targets)) findings.push({ path: ['fleets', name, 'target'], message: missingName('target', target, targets) });
    const imageSpec = typeof image === 'string' ? images[image] : undefined;
    const targetSpec = typeof target === 'string' ? targets[target] : undefined;
    if (isRecord(imageSpec) && isRecord(targetSpec) && isTargetType(targetSpec.type)) {
      const problem = compatibility(name, image as string, imageSpec, target as string, targetSpec as Record<string, unknown> & { type: TargetType });
      if (problem) findings.push(problem);
    }
  }
  return findings;
}

function replicasOf(fleet: Record<string, unknown>): number {
  return typeof fleet.replicas === 'number' ? fleet.replicas : 1;
}

/** Targets with a fixed number of slots (e.g. Proxmox VM ids; see each descriptor's `slots`) must hold every fleet on them. */
function capacityFindings(raw: Record<string, unknown>): Finding[] {
  const fleets = records(section(raw, 'fleets'));
  return records(section(raw, 'targets')).flatMap(([name, target]): Finding[] => {
    const slots = slotsOf(target);
    if (slots === undefined) return [];
    const needed = fleets.filter(([, f]) => f.target === name).reduce((sum, [, f]) => sum + replicasOf(f), 0);
    if (needed <= slots.count) return [];
    return [{ path: ['targets', name, slots.field], message: `${slots.what}, but the fleets on target "${name}" ask for ${needed} replicas; widen it or lower replicas` }];
  });
}

function slotsOf(target: Record<string, unknown>): TargetSlots | undefined {
  return isTargetType(target.type) ? targetDescriptor(target.type).slots?.(target) : undefined;
}

function scheduleFindings(raw: Record<string, unknown>): Finding[] {
  if (raw.fleets !== undefined && !isRecord(raw.fleets)) return [];
  const fleets = section(raw, 'fleets');
  return records(section(raw, 'schedules')).flatMap(([name, schedule]) =>
    (Array.isArray(schedule.fleets) ? schedule.fleets : []).flatMap((fleet, index): Finding[] =>
      typeof fleet === 'string' && !(fleet in fleets) ? [{ path: ['schedules', name, 'fleets', index], message: missingName('fleet', fleet, fleets) }] : [],
    ),
  );
}

/** Every cross-reference problem in a raw (YAML-decoded) spec. */
export function referenceFindings(raw: unknown): Finding[] {
  if (!isRecord(raw)) return [];
  return [...fleetFindings(raw), ...capacityFindings(raw), ...scheduleFindings(raw)];
}
