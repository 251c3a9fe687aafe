/**
 * The host-key policy of one connection: which keys are pinned (hostKey and/or knownHosts), which
 * are revoked, and which host-key algorithms to ask for so the server presents a pinned key rather
 * than another key type it also holds. Built before connecting; a host with no pin is refused here.
 */
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { HostKeyMismatchError, HostKeyNotPinnedError } from '../errors';
import { SHA256_FINGERPRINT_PATTERN } from '../platform/openssh';
import { blobKeyType, parsePublicKey, sshFingerprint } from './fingerprint';
import { entriesFor, knownHostsName, parseKnownHosts } from './known-hosts';

/** What pins a host key; the fields of the spec's SSH connection. */
export interface HostKeyPins {
  host: string;
  port?: number;
  /** An OpenSSH public key line or its `SHA256:…` fingerprint. */
  hostKey?: string;
  /** A known_hosts file (plain or hashed entries); `~/` is the home directory. */
  knownHosts?: string;
}

/** One acceptable (or revoked) key. */
export interface PinnedKey {
  /** Key type, when known (a bare fingerprint pin does not say). */
  readonly type?: string;
  readonly fingerprint: string;
  /** Where the pin came from: `hostKey` or `file:line`. */
  readonly source: string;
}

export interface HostKeyPolicy {
  /** `host:port`, for messages. */
  readonly host: string;
  readonly accepted: readonly PinnedKey[];
  readonly revoked: readonly PinnedKey[];
  /** Server host-key algorithms to offer, most preferred first; undefined keeps ssh2's defaults. */
  readonly algorithms?: readonly string[];
}

// ssh2's supported host-key algorithms in its preference order; an RSA key signs with any of three.
const ALGORITHMS_BY_TYPE: ReadonlyArray<readonly [algorithm: string, keyType: string]> = [
  ['ssh-ed25519', 'ssh-ed25519'],
  ['ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp256'],
  ['ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp384'],
  ['ecdsa-sha2-nistp521', 'ecdsa-sha2-nistp521'],
  ['rsa-sha2-512', 'ssh-rsa'],
  ['rsa-sha2-256', 'ssh-rsa'],
  ['ssh-rsa', 'ssh-rsa'],
];

function describe(key: PinnedKey): string {
  return `${key.type ? `${key.type} ` : ''}${key.fingerprint} (${key.source})`;
}

function expandHome(file: string): string {
  return file === '~' || file.startsWith('~/') ? path.join(os.homedir(), file.slice(1)) : file;
}

/** Build the policy for a host; throws HostKeyNotPinnedError when nothing pins its key. */
export async function loadHostKeyPolicy(pins: HostKeyPins): Promise<HostKeyPolicy> {
  const port = pins.port ?? 22;
  const host = `${pins.host}:${port}`;
  const accepted: PinnedKey[] = [];
  const revoked: PinnedKey[] = [];

  if (pins.hostKey !== undefined) {
    const pin = pins.hostKey.trim();
    if (SHA256_FINGERPRINT_PATTERN.test(pin)) {
      accepted.push({ fingerprint: pin, source: 'hostKey' });
    } else {
      let key;
      try {
        key = parsePublicKey(pin);
      } catch (err) {
        throw new HostKeyNotPinnedError(host, `hostKey is neither an OpenSSH public key line nor a SHA256 fingerprint: ${(err as Error).message}`);
      }
      accepted.push({ type: key.type, fingerprint: sshFingerprint(key.blob), source: 'hostKey' });
    }
  }

  if (pins.knownHosts !== undefined) {
    const file = expandHome(pins.knownHosts);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new HostKeyNotPinnedError(host, `cannot read known_hosts file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    const parsed = parseKnownHosts(text);
    const matching = entriesFor(parsed, pins.host, port);
    for (const entry of matching) {
      const key = { type: entry.type, fingerprint: entry.fingerprint, source: `${file}:${entry.line}` };
      if (entry.marker === 'revoked') revoked.push(key);
      else if (entry.marker === undefined) accepted.push(key);
    }
    if (accepted.length === 0 && pins.hostKey === undefined) {
      const problems = parsed.problems.length > 0 ? ` (skipped: ${parsed.problems.join('; ')})` : '';
      const onlyCa = matching.some((entry) => entry.marker === 'cert-authority') ? ' (only @cert-authority lines match; host certificates are not supported)' : '';
      throw new HostKeyNotPinnedError(host, `known_hosts file ${file} has no key for ${knownHostsName(pins.host, port)}${onlyCa}${problems}`);
    }
  }

  if (accepted.length === 0) {
    throw new HostKeyNotPinnedError(host, 'no host key is pinned (neither hostKey nor knownHosts is set), and KubeDos never trusts a host key on first use');
  }

  // Ask only for the pinned key types, so a server holding several keys presents a pinned one.
  // A bare fingerprint does not say its type: then any algorithm may be negotiated.
  let algorithms: string[] | undefined;
  if (accepted.every((key) => key.type !== undefined)) {
    const types = new Set(accepted.map((key) => key.type));
    algorithms = ALGORITHMS_BY_TYPE.filter(([, type]) => types.has(type)).map(([algorithm]) => algorithm);
    if (algorithms.length === 0) {
      throw new HostKeyNotPinnedError(host, `the pinned key type${types.size > 1 ? 's' : ''} ${[...types].join(', ')} cannot be used as a host key`);
    }
  }
  return { host, accepted, revoked, algorithms };
}

/** Check the key a server offered against the policy; returns its fingerprint or throws HostKeyMismatchError. */
export function verifyHostKey(policy: HostKeyPolicy, blob: Buffer): string {
  const fingerprint = sshFingerprint(blob);
  const offered = `${blobKeyType(blob) ?? 'unknown-type'} ${fingerprint}`;
  const expected = policy.accepted.map(describe);
  if (policy.revoked.some((key) => key.fingerprint === fingerprint)) throw new HostKeyMismatchError(policy.host, expected, offered, true);
  if (!policy.accepted.some((key) => key.fingerprint === fingerprint)) throw new HostKeyMismatchError(policy.host, expected, offered);
  return fingerprint;
}

/** The mismatch error for a server that holds none of the pinned key types (key exchange found no common algorithm). */
export function noPinnedKeyTypeError(policy: HostKeyPolicy): HostKeyMismatchError {
  const types = [...new Set(policy.accepted.map((key) => key.type))].join(', ');
  return new HostKeyMismatchError(policy.host, policy.accepted.map(describe), `no ${types} host key (it holds only other key types)`);
}
