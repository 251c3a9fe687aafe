/**
 * The output-format registry, derived from ./registry.ts: names, lookup and help text. Requested
 * formats are checked here before any work starts.
 */
import { BuildPlanError } from '../../errors';
import type { OutputFormat } from './format';
import * as registered from './registry';

export type { OutputFormat } from './format';

type Registered = typeof registered;
/** Name of an output format, e.g. `qcow2`. */
export type FormatName = Registered[keyof Registered]['name'];

/** Every format, in registry order. */
export const OUTPUT_FORMATS: readonly OutputFormat<FormatName>[] = Object.values(registered);

/** Every format name, in registry order. */
export const FORMAT_NAMES: readonly FormatName[] = OUTPUT_FORMATS.map((f) => f.name);

const BY_NAME = new Map<string, OutputFormat<FormatName>>(OUTPUT_FORMATS.map((f) => [f.name, f]));

/** Type guard for format names from untyped input. */
export function isFormatName(value: unknown): value is FormatName {
  return typeof value === 'string' && BY_NAME.has(value);
}

/** The descriptor of a format by name. */
export function formatNamed(name: FormatName): OutputFormat<FormatName> {
  return BY_NAME.get(name)!;
}

/** Look up requested formats, rejecting unknown names before any work starts. */
export function resolveFormats(names: readonly string[]): OutputFormat<FormatName>[] {
  const unknown = names.filter((n) => !isFormatName(n));
  if (unknown.length > 0) {
    throw new BuildPlanError(unknown.map((n) => `unknown output format "${n}" (known: ${FORMAT_NAMES.join(', ')})`));
  }
  return [...new Set(names)].map((n) => BY_NAME.get(n)!);
}

/** `name  description` lines for help text. */
export function describeFormats(): string {
  const width = Math.max(...FORMAT_NAMES.map((n) => n.length));
  return OUTPUT_FORMATS.map((f) => `${f.name.padEnd(width)}  ${f.description}`).join('\n');
}

/**
 * The modules of the layer's initramfs: every format's early-boot modules and the plan's own,
 * deduplicated and sorted, so a layer serves every format and its digest names what it carries.
 */
export function initramfsModules(extra: readonly string[] = []): string[] {
  return [...new Set([...OUTPUT_FORMATS.flatMap((f) => f.earlyBoot?.modules ?? []), ...extra])].sort();
}

/** Executables the build pool needs for every registered format (deduplicated, sorted). */
export function formatTools(): string[] {
  return [...new Set(OUTPUT_FORMATS.flatMap((f) => f.tools))].sort();
}
