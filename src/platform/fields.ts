/**
 * Reusable field schemas of the platform spec. Each one carries its own error message naming what
 * was expected, because a generic "invalid string" is useless in front of a YAML file. Patterns
 * are real regexes where possible so the JSON Schema carries them for editor validation too.
 */
import { z } from 'zod';
import { cronProblem } from './cron';
import { hostKeyPinProblem, sshPublicKeyProblem } from './openssh';
import { DURATION_PATTERN, parseDuration, parseSize, SIZE_PATTERN, formatSize } from './quantities';
import { namesOf, type CatalogEntry } from './catalog';
import { isRecord, show } from './show';
import { MODULE_NAME } from '../foundry/formats/early-boot';

/** DNS label (RFC 1123): what a hostname component, a Kubernetes name and a VM name all accept. */
export const NAME_PATTERN = /^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** A string checked by a function returning a problem description (or `undefined` when fine). */
function checked(base: z.ZodString, problem: (value: string) => string | undefined): z.ZodString {
  return base.superRefine((value, ctx) => {
    const message = problem(value);
    if (message) ctx.addIssue({ code: 'custom', message, input: value });
  });
}

/** A DNS-label name; `what` appears in the message ("image name", "role"). */
export function name(what: string): z.ZodString {
  return z.string().regex(NAME_PATTERN, {
    error: (iss) =>
      `${show(iss.input)} is not a valid ${what}: use 1-63 lowercase letters, digits and '-', starting with a letter and not ending with '-'`,
  });
}

/** A duration string (`90s`, `5m`, `1h30m`, `500ms`) parsed to milliseconds. */
export function duration() {
  return z
    .string()
    .regex(DURATION_PATTERN, {
      error: (iss) => `invalid duration ${show(iss.input)}: write a number with a unit (h, m, s, ms) in that order, e.g. 90s, 5m, 1h30m`,
    })
    .transform((text) => parseDuration(text) as number);
}

/** A size string (`2GiB`, `512MiB`, `10GB`) parsed to bytes, at least `min` bytes. */
export function size(min: number) {
  return z
    .string()
    .regex(SIZE_PATTERN, {
      error: (iss) => `invalid size ${show(iss.input)}: write an integer with a unit B, KB, KiB, MB, MiB, GB, GiB, TB or TiB, e.g. 2GiB`,
    })
    .superRefine((text, ctx) => {
      const bytes = parseSize(text);
      // A non-matching string was reported by the regex above; only judge well-formed ones.
      if (SIZE_PATTERN.test(text) && (bytes === undefined || bytes < min)) {
        const why = bytes === undefined ? 'is too large' : `is below the minimum of ${formatSize(min)}`;
        ctx.addIssue({ code: 'custom', message: `size ${show(text)} ${why}`, input: text });
      }
    })
    .transform((text) => parseSize(text) as number);
}

/**
 * File mode as an octal string. YAML 1.2 reads an unquoted `0644` as the decimal number 644, so
 * numbers are rejected with that explanation instead of silently becoming mode 01204.
 */
export const octalMode = z
  .string({
    error: (iss) =>
      typeof iss.input === 'number'
        ? `expected a quoted octal string such as "0644", got the number ${iss.input} (YAML reads unquoted 0644 as decimal 644)`
        : undefined,
  })
  .regex(/^[0-7]{3,4}$/, { error: (iss) => `invalid mode ${show(iss.input)}: expected 3 or 4 octal digits such as "0644"` })
  .transform((mode) => mode.padStart(4, '0'));

/** `user:group`, by name or numeric id. */
export const owner = z.string().regex(/^(?:[a-z_][a-z0-9_-]*|\d+):(?:[a-z_][a-z0-9_-]*|\d+)$/, {
  error: (iss) => `invalid owner ${show(iss.input)}: expected user:group, e.g. root:root or 1000:1000`,
});

function payloadPathProblem(path: string): string | undefined {
  if (!path.startsWith('/')) return `path ${show(path)} must be absolute (start with /)`;
  if (path.length > 1 && path.endsWith('/')) return `path ${show(path)} must name a file, not end with /`;
  const segments = path.split('/').slice(1);
  if (segments.some((s) => s === '..' || s === '.')) return `path ${show(path)} must not contain . or .. segments`;
  if (segments.some((s) => s === '')) return `path ${show(path)} must not be / or contain empty segments (//)`;
  if (path.includes('\0')) return `path ${show(path)} must not contain NUL`;
  return undefined;
}

/** An absolute path inside the image, normalised (no `.`/`..`, no trailing slash). */
export const payloadPath = checked(z.string(), payloadPathProblem);

/** A systemd unit file name with one of the supported suffixes (escapes such as `\x2d` allowed). */
export const unitName = z.string().regex(/^[A-Za-z0-9:_.\\@-]+\.(?:service|timer|socket|path|mount|target)$/, {
  error: (iss) => `invalid unit name ${show(iss.input)}: expected a systemd unit file name ending in .service, .timer, .socket, .path, .mount or .target`,
});

/** First-boot script names sort lexically, hence the conventional numeric prefix (`10-sysctl`). */
export const scriptName = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, {
  error: (iss) => `invalid script name ${show(iss.input)}: use lowercase letters, digits, '.', '_' and '-', e.g. 10-sysctl`,
});

/** A script with an interpreter line, since it is executed directly. */
export const script = z.string().regex(/^#!\S/, { error: 'the script must start with an interpreter line such as #!/bin/sh' });

/** A Debian package name, optionally pinned to a version with `=`. */
export const packageName = z.string().regex(/^[a-z0-9][a-z0-9+.-]+(?:=[A-Za-z0-9.+~:-]+)?$/, {
  error: (iss) => `invalid package name ${show(iss.input)}: expected a Debian package name, optionally pinned as name=version`,
});

/** A kernel module name as modprobe takes it (the Foundry's own rule). */
export const kernelModuleName = z.string().regex(MODULE_NAME, {
  error: (iss) => `invalid kernel module name ${show(iss.input)}: expected a name such as megaraid_sas (no path, no .ko)`,
});

/** An OpenSSH public key line, as in authorized_keys. */
export const sshPublicKey = checked(z.string(), sshPublicKeyProblem);

/** A pinned host key: an OpenSSH public key line or its SHA256 fingerprint. */
export const hostKeyPin = checked(z.string(), hostKeyPinProblem);

/** Name of an environment variable holding a secret: the spec never holds the secret itself. */
export const envVarName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, {
  error: (iss) => `invalid environment variable name ${show(iss.input)}: give the NAME of a variable (e.g. GOVC_PASSWORD), never the secret itself`,
});

/** Control characters (newline, NUL, …): never part of a name, URL or path a command or file receives. */
const CONTROL = /[\u0000-\u001f\u007f]/;

/** An http(s) URL (written as given into sources lists and requests, so no spaces or control characters). */
export function httpUrl(what: string): z.ZodString {
  return checked(z.string(), (value) => {
    if (CONTROL.test(value) || /\s/.test(value)) return `${what} ${show(value)} must not contain spaces or control characters`;
    try {
      const url = new URL(value);
      return url.protocol === 'http:' || url.protocol === 'https:' ? undefined : `${what} ${show(value)} must be an http or https URL`;
    } catch {
      return `${what} ${show(value)} is not a URL`;
    }
  });
}

/** A five-field cron expression, checked loosely (see cron.ts). */
export const cronExpression = checked(z.string(), cronProblem);

/** An IANA time zone known to this Node runtime. */
export const timeZone = checked(z.string(), (zone) => {
  try {
    new Intl.DateTimeFormat('en', { timeZone: zone });
    return undefined;
  } catch {
    return `unknown time zone ${show(zone)}: expected an IANA name such as UTC or Europe/Berlin`;
  }
});

/** A host name or IP address (brackets optional for IPv6); never starting with '-', so it cannot read as an option. */
export const hostAddress = z.string().regex(/^(?!-)[A-Za-z0-9._:[\]-]+$/, {
  error: (iss) => `invalid host ${show(iss.input)}: expected a host name or IP address`,
});

/** A file on the worker's host (a key, a known_hosts file): any path, but no control characters. */
export function localPath(what: string): z.ZodString {
  return checked(z.string().min(1), (value) => (CONTROL.test(value) ? `${what} ${show(value)} must not contain control characters` : undefined));
}

/**
 * An absolute path on a remote host, where it is given to commands: '/'-rooted, normalised (no
 * `.` or `..` components, no empty ones), printable characters other than whitespace.
 */
export function hostPath(what: string): z.ZodString {
  return checked(z.string(), (value) => {
    if (!value.startsWith('/')) return `${what} ${show(value)} must be an absolute path (starting with /)`;
    if (CONTROL.test(value) || /\s/.test(value)) return `${what} ${show(value)} must not contain spaces or control characters`;
    const parts = value.split('/').slice(1);
    if (value !== '/' && parts.some((p) => p === '' || p === '.' || p === '..')) return `${what} ${show(value)} must be normalised: no empty, '.' or '..' components, no trailing '/'`;
    return undefined;
  });
}

/** One argument of a command run without a shell: any text but NUL (argv cannot carry it). */
export const argvElement = z.string().refine((v) => !v.includes('\0'), { error: 'a command argument cannot contain a NUL byte' });

/** A count of nodes or a percentage of the fleet (`25%`), as in Kubernetes rollouts. */
const countOrPercentMessage = (iss: { input?: unknown }): string =>
  `expected a non-negative integer or a percentage such as "25%", got ${show(iss.input)}`;
export const countOrPercent = z.union([z.int().min(0), z.string().regex(/^(?:100|[1-9]?\d)%$/, { error: countOrPercentMessage })], {
  error: countOrPercentMessage,
});

/**
 * Reject duplicates in a list, pointing at the second occurrence. `keyOf` picks the identity
 * (a unit's name, a file's path); `what` names it in the message.
 */
export function unique<T>(what: string, keyOf: (item: T) => unknown = (item) => item) {
  return (items: readonly T[], ctx: z.RefinementCtx<T[]>): void => {
    const seen = new Map<unknown, number>();
    items.forEach((item, index) => {
      const key = keyOf(item);
      const first = seen.get(key);
      if (first === undefined) seen.set(key, index);
      else ctx.addIssue({ code: 'custom', path: [index], message: `duplicate ${what} ${show(key)} (first at [${first}])`, input: item });
    });
  };
}

/**
 * An object-level rule that runs even when sibling fields have issues, so the problem is reported
 * in the same pass as the others. It therefore sees raw input and must check types itself.
 */
export function objectRule(rule: (value: Record<string, unknown>) => { message: string; path?: PropertyKey[] } | undefined) {
  return [
    (value: unknown, ctx: z.RefinementCtx<unknown>): void => {
      if (!isRecord(value)) return;
      const problem = rule(value);
      if (problem) ctx.addIssue({ code: 'custom', message: problem.message, path: problem.path ?? [], input: value });
    },
    { when: () => true },
  ] as const;
}

/** One of a catalog table's names, with a message listing them all. */
export function choice<const T extends readonly CatalogEntry[]>(table: T, noun: string) {
  const names = namesOf(table);
  return z.enum(names, {
    error: (iss) => `${iss.input === undefined ? `missing ${noun}` : `unknown ${noun} ${show(iss.input)}`}; expected one of ${names.join(', ')}`,
  });
}

/** Message for a discriminated union whose `type` matches no variant. */
export function unknownType(noun: string, table: readonly CatalogEntry[]) {
  return (iss: { code?: string; input?: unknown }): string | undefined => {
    if (iss.code !== 'invalid_union') return undefined;
    const type = isRecord(iss.input) ? iss.input.type : undefined;
    const expected = `expected one of ${table.map((t) => t.name).join(', ')}`;
    return type === undefined ? `missing "type"; ${expected}` : `unknown ${noun} ${show(type)}; ${expected}`;
  };
}

export function describeTable(table: readonly CatalogEntry[]): string {
  return table.map((t) => `${t.name}: ${t.description}`).join('; ');
}
