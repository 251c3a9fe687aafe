/**
 * Fingerprints and known_hosts matching, checked against ssh-keygen itself: `-l` for fingerprints,
 * `-H` to hash a file, `-F` as the oracle for which lines apply to a host.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { HostKeyMismatchError, HostKeyNotPinnedError } from '../../src/errors';
import { entriesFor, knownHostsName, loadHostKeyPolicy, parseKnownHosts, sshFingerprint, verifyHostKey, parsePublicKey } from '../../src/ssh';
import { keygen, keygenFingerprint } from '../support/sshd';

const run = promisify(execFile);
let tmp: string;
const keys: Record<'ed25519' | 'ecdsa' | 'rsa', { line: string; fingerprint: string }> = {} as never;

beforeAll(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'kubedos-known-hosts-'));
  await keygen(path.join(tmp, 'ed25519'), 'ed25519');
  await keygen(path.join(tmp, 'ecdsa'), 'ecdsa');
  await run('ssh-keygen', ['-q', '-t', 'rsa', '-b', '2048', '-N', '', '-f', path.join(tmp, 'rsa')]);
  for (const type of ['ed25519', 'ecdsa', 'rsa'] as const) {
    keys[type] = { line: readFileSync(path.join(tmp, `${type}.pub`), 'utf8').trim(), fingerprint: await keygenFingerprint(path.join(tmp, `${type}.pub`)) };
  }
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

test('sshFingerprint equals ssh-keygen -l for ed25519, ECDSA and RSA keys, from a line or a blob', () => {
  for (const { line, fingerprint } of Object.values(keys)) {
    expect(sshFingerprint(line)).toBe(fingerprint);
    expect(sshFingerprint(parsePublicKey(line).blob)).toBe(fingerprint);
  }
  expect(() => sshFingerprint('ssh-ed25519 AAAA')).toThrow(/not an OpenSSH public key/);
});

/** Which lines (1-based) ssh-keygen -F reports for a lookup name. */
async function oracle(file: string, name: string): Promise<number[]> {
  try {
    const { stdout } = await run('ssh-keygen', ['-F', name, '-f', file]);
    return [...stdout.matchAll(/found: line (\d+)/g)].map((m) => Number(m[1]));
  } catch {
    return []; // exit 1: not found
  }
}

const LOOKUPS: Array<[host: string, port: number]> = [
  ['node-1.example.com', 22],
  ['bad.example.com', 22],
  ['NODE-1.Example.COM', 22],
  ['10.0.0.5', 2222],
  ['10.0.0.5', 22],
  ['10.0.0.55', 2222],
  ['plain.host', 22],
  ['plain.host', 2200],
  ['hashed.host', 22],
  ['hashed.host', 2222],
  ['other.host', 22],
];

test('plain, wildcard, negated, [host]:port and hashed entries apply to exactly the hosts ssh-keygen -F finds', async () => {
  const file = path.join(tmp, 'known_hosts');
  const k = (type: keyof typeof keys) => keys[type].line.split(' ').slice(0, 2).join(' ');
  writeFileSync(
    file,
    [
      '# comment, then a blank line',
      '',
      `*.example.com,!bad.example.com ${k('ed25519')}`,
      `[10.0.0.?]:2222 ${k('ecdsa')} a comment`,
      `plain.host ${k('rsa')}`,
      `hashed.host ${k('ed25519')}`,
      `[hashed.host]:2222 ${k('ecdsa')}`,
      'broken.host ssh-ed25519 AAAA',
    ].join('\n') + '\n',
  );
  // Hash the concrete names in place with the real tool (patterns stay as written).
  await run('ssh-keygen', ['-H', '-f', file]);
  const text = readFileSync(file, 'utf8');
  expect(text).toMatch(/^\|1\|/m);
  const parsed = parseKnownHosts(text);
  expect(parsed.problems).toEqual([expect.stringMatching(/^line \d+: not an OpenSSH public key/)]);
  for (const [host, port] of LOOKUPS) {
    const ours = entriesFor(parsed, host, port).map((e) => e.line);
    expect({ host, port, lines: ours }).toEqual({ host, port, lines: await oracle(file, knownHostsName(host, port)) });
  }
  expect(entriesFor(parsed, 'hashed.host', 2222).map((e) => e.fingerprint)).toEqual([keys.ecdsa.fingerprint]);
});

test('a policy pins key lines by type, fingerprints without one, and refuses revoked or unpinned keys', async () => {
  const blob = (type: keyof typeof keys) => parsePublicKey(keys[type].line).blob;
  const byLine = await loadHostKeyPolicy({ host: 'h', hostKey: keys.ecdsa.line });
  expect(byLine.algorithms).toEqual(['ecdsa-sha2-nistp256']);
  expect(verifyHostKey(byLine, blob('ecdsa'))).toBe(keys.ecdsa.fingerprint);
  expect(() => verifyHostKey(byLine, blob('ed25519'))).toThrow(HostKeyMismatchError);

  const rsa = await loadHostKeyPolicy({ host: 'h', hostKey: keys.rsa.line });
  expect(rsa.algorithms).toEqual(['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']);
  const byFingerprint = await loadHostKeyPolicy({ host: 'h', hostKey: keys.ed25519.fingerprint });
  expect(byFingerprint.algorithms).toBeUndefined();

  const file = path.join(tmp, 'revoking');
  writeFileSync(file, `h ${keys.ed25519.line}\n@revoked h ${keys.ecdsa.line}\n@cert-authority other ${keys.rsa.line}\n`);
  const revoking = await loadHostKeyPolicy({ host: 'h', hostKey: keys.ecdsa.line, knownHosts: file });
  const err = (() => {
    try {
      verifyHostKey(revoking, blob('ecdsa'));
    } catch (e) {
      return e as HostKeyMismatchError;
    }
  })();
  expect(err).toBeInstanceOf(HostKeyMismatchError);
  expect(err?.revoked).toBe(true);
  expect(err?.message).toMatch(/@revoked/);

  await expect(loadHostKeyPolicy({ host: 'h' })).rejects.toThrow(HostKeyNotPinnedError);
  await expect(loadHostKeyPolicy({ host: 'other', knownHosts: file })).rejects.toThrow(/no key for other.*only @cert-authority/);
  await expect(loadHostKeyPolicy({ host: 'h', port: 2222, knownHosts: file })).rejects.toThrow(/has no key for \[h\]:2222/);
  await expect(loadHostKeyPolicy({ host: 'h', knownHosts: path.join(tmp, 'missing') })).rejects.toThrow(/cannot read known_hosts file .*ENOENT/);
});
