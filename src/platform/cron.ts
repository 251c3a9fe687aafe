/**
 * A loose check of five-field cron expressions: field count, syntax and ranges. Temporal's
 * scheduler is the real parser; this exists so a typo fails at `kubedos validate` with the field
 * named, not hours later when the schedule is created.
 */

interface CronField {
  readonly name: string;
  readonly min: number;
  readonly max: number;
  readonly names?: readonly string[];
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

const FIELDS: readonly CronField[] = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day-of-month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12, names: MONTHS },
  // 7 is Sunday too, as in Vixie cron.
  { name: 'day-of-week', min: 0, max: 7, names: DAYS },
];

function valueOf(token: string, field: CronField): number | undefined {
  if (/^\d+$/.test(token)) return Number(token);
  const index = field.names?.indexOf(token.toLowerCase()) ?? -1;
  if (index < 0) return undefined;
  return field.name === 'month' ? index + 1 : index;
}

function checkValue(token: string, field: CronField): string | undefined {
  const value = valueOf(token, field);
  if (value === undefined) return `${field.name} field: "${token}" is not a number`;
  if (value < field.min || value > field.max) return `${field.name} field: ${value} is out of range ${field.min}-${field.max}`;
  return undefined;
}

/** One comma-separated item: `*`, `n`, `a-b`, each optionally with `/step`. */
function checkItem(item: string, field: CronField): string | undefined {
  const [range, step, extra] = item.split('/');
  if (extra !== undefined || range === undefined || range === '') return `${field.name} field: "${item}" is malformed`;
  if (step !== undefined && !/^[1-9]\d*$/.test(step)) return `${field.name} field: step "${step}" must be a positive integer`;
  if (range === '*') return undefined;
  const bounds = range.split('-');
  if (bounds.length > 2) return `${field.name} field: "${range}" is malformed`;
  for (const bound of bounds) {
    const problem = checkValue(bound, field);
    if (problem) return problem;
  }
  const [low, high] = bounds.map((b) => valueOf(b, field) as number);
  if (high !== undefined && (low as number) > high) return `${field.name} field: range ${range} is reversed`;
  return undefined;
}

/** Describe what is wrong with a five-field cron expression, or `undefined` when it looks valid. */
export function cronProblem(expression: string): string | undefined {
  const parts = expression.trim().split(/\s+/);
  if (parts.length !== FIELDS.length) {
    return `expected 5 fields (minute hour day-of-month month day-of-week), got ${parts.length} in "${expression}"`;
  }
  for (const [i, field] of FIELDS.entries()) {
    for (const item of (parts[i] as string).split(',')) {
      const problem = checkItem(item, field);
      if (problem) return `${problem} in "${expression}"`;
    }
  }
  return undefined;
}
