/**
 * Durations and sizes as people write them in YAML (`90s`, `1h30m`, `2GiB`), parsed to plain
 * numbers so the rest of the code never re-parses strings. Pure functions, safe in workflows.
 */

/** Milliseconds. */
export type Milliseconds = number;
/** Bytes. */
export type Bytes = number;

/**
 * Units in descending order, each at most once (`1h30m`, `90s`, `500ms`). The order is fixed so
 * `5m1h` is rejected rather than silently meaning 65 minutes; the lookahead forbids an empty string.
 */
export const DURATION_PATTERN = /^(?=\d)(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$/;

const MS_PER = [3_600_000, 60_000, 1_000, 1] as const;

/** Parse a duration string to milliseconds; `undefined` when it does not match {@link DURATION_PATTERN}. */
export function parseDuration(text: string): Milliseconds | undefined {
  const match = DURATION_PATTERN.exec(text);
  if (!match) return undefined;
  const ms = MS_PER.reduce((sum, factor, i) => sum + Number(match[i + 1] ?? 0) * factor, 0);
  return Number.isSafeInteger(ms) ? ms : undefined;
}

/** Units are explicit about their base: `G` alone is rejected because people mean both 10^9 and 2^30. */
export const SIZE_PATTERN = /^(\d+)(B|KB|KiB|MB|MiB|GB|GiB|TB|TiB)$/;

const BYTES_PER: Readonly<Record<string, number>> = {
  B: 1,
  KB: 1e3,
  KiB: 2 ** 10,
  MB: 1e6,
  MiB: 2 ** 20,
  GB: 1e9,
  GiB: 2 ** 30,
  TB: 1e12,
  TiB: 2 ** 40,
};

/** Parse a size string to bytes; `undefined` when it does not match {@link SIZE_PATTERN} or overflows. */
export function parseSize(text: string): Bytes | undefined {
  const match = SIZE_PATTERN.exec(text);
  if (!match) return undefined;
  const bytes = Number(match[1]) * (BYTES_PER[match[2] as string] as number);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** Render bytes with the largest binary unit that divides them exactly (`2147483648` → `2GiB`). */
export function formatSize(bytes: Bytes): string {
  for (const unit of ['TiB', 'GiB', 'MiB', 'KiB'] as const) {
    const factor = BYTES_PER[unit] as number;
    if (bytes >= factor && bytes % factor === 0) return `${bytes / factor}${unit}`;
  }
  return `${bytes}B`;
}
