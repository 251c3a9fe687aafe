/**
 * Reading OpenSSH known_hosts files (sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT"): plain and hashed
 * (`|1|salt|hmac`) host fields, comma-separated patterns with `*`/`?` wildcards and `!` negation,
 * `[host]:port` for non-default ports, and the `@revoked` marker. `@cert-authority` lines are kept
 * but never match: KubeDos pins keys, it does not accept host certificates.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { parsePublicKey, sshFingerprint } from './fingerprint';

/** One key line of a known_hosts file. */
export interface KnownHostEntry {
  readonly marker?: 'revoked' | 'cert-authority';
  /** The host field as written: patterns, or a hashed `|1|salt|hmac`. */
  readonly hosts: string;
  readonly type: string;
  readonly blob: Buffer;
  readonly fingerprint: string;
  /** 1-based line number, for messages. */
  readonly line: number;
}

export interface KnownHostsFile {
  readonly entries: readonly KnownHostEntry[];
  /** Lines that were skipped, with why (`line 3: …`): shown when no entry matches. */
  readonly problems: readonly string[];
}

/** Parse the text of a known_hosts file. Malformed lines are skipped and listed, as ssh does. */
export function parseKnownHosts(text: string): KnownHostsFile {
  const entries: KnownHostEntry[] = [];
  const problems: string[] = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = index + 1;
    const content = raw.trim();
    if (content === '' || content.startsWith('#')) return;
    const fields = content.split(/\s+/);
    let marker: KnownHostEntry['marker'];
    if (fields[0]?.startsWith('@')) {
      const word = fields.shift();
      if (word === '@revoked') marker = 'revoked';
      else if (word === '@cert-authority') marker = 'cert-authority';
      else {
        problems.push(`line ${line}: unknown marker ${word}`);
        return;
      }
    }
    const [hosts, type, data] = fields;
    if (!hosts || !type || !data) {
      problems.push(`line ${line}: expected "[marker] hosts keytype base64-key [comment]"`);
      return;
    }
    try {
      const key = parsePublicKey(`${type} ${data}`);
      entries.push({ marker, hosts, type: key.type, blob: key.blob, fingerprint: sshFingerprint(key.blob), line });
    } catch (err) {
      problems.push(`line ${line}: ${(err as Error).message}`);
    }
  });
  return { entries, problems };
}

/** The name ssh looks a host up by: `host` on port 22, `[host]:port` otherwise; lower-cased. */
export function knownHostsName(host: string, port = 22): string {
  const name = host.toLowerCase();
  return port === 22 ? name : `[${name}]:${port}`;
}

/** `*` and `?` glob, case-insensitive, anchored (OpenSSH match_pattern). */
function globMatches(pattern: string, name: string): boolean {
  const source = pattern
    .toLowerCase()
    .split('')
    .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[\\^$.+()[\]{}|]/g, '\\$&')))
    .join('');
  return new RegExp(`^${source}$`, 's').test(name);
}

/** HMAC-SHA1 form of hashed host fields: `|1|base64(salt)|base64(hmac_sha1(salt, name))`. */
function hashedMatches(field: string, name: string): boolean {
  const [, magic, salt, hash] = field.split('|');
  if (magic !== '1' || !salt || !hash) return false;
  const expected = Buffer.from(hash, 'base64');
  const actual = createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest();
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

/** True when a known_hosts host field names `name` (as built by knownHostsName). */
export function hostFieldMatches(field: string, name: string): boolean {
  if (field.startsWith('|')) return hashedMatches(field, name);
  let matched = false;
  for (const pattern of field.split(',')) {
    if (pattern.startsWith('!')) {
      // A matching negation excludes the line whatever else matches (OpenSSH match_hostname).
      if (globMatches(pattern.slice(1), name)) return false;
    } else if (globMatches(pattern, name)) {
      matched = true;
    }
  }
  return matched;
}

/** The entries of a parsed file that apply to host:port (including @revoked and @cert-authority ones). */
export function entriesFor(file: KnownHostsFile, host: string, port = 22): KnownHostEntry[] {
  const name = knownHostsName(host, port);
  return file.entries.filter((entry) => hostFieldMatches(entry.hosts, name));
}
