/**
 * Host-key pinning against a real sshd: every form of pin connects to the right key, and a wrong
 * or missing pin is refused with a clear error before anything is authenticated or run.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { HostKeyMismatchError, HostKeyNotPinnedError, SshAuthError } from '../../src/errors';
import { SshClient, type SshTarget } from '../../src/ssh';
import { keygen, keygenFingerprint, startSshd, type SshdServer } from '../support/sshd';

const run = promisify(execFile);
let sshd: SshdServer;

beforeAll(async () => {
  sshd = await startSshd();
});
afterAll(() => sshd?.stop());

async function connectAndRun(target: SshTarget): Promise<{ fingerprint: string; stdout: string }> {
  const client = await SshClient.connect(target);
  try {
    const { stdout } = await client.run(['echo', 'connected']);
    return { fingerprint: client.hostKeyFingerprint, stdout };
  } finally {
    await client.close();
  }
}

function keyOnly(line: string): string {
  return line.split(' ').slice(0, 2).join(' ');
}

test('connects with the host key pinned as a key line (either of its keys) or a SHA256 fingerprint', async () => {
  const { ed25519, ecdsa } = sshd.hostKeys;
  expect(await connectAndRun(sshd.target({ hostKey: ed25519.publicKey }))).toEqual({ fingerprint: ed25519.fingerprint, stdout: 'connected\n' });
  // The ECDSA key is not the server's first choice: pinning it must make the client ask for it.
  expect((await connectAndRun(sshd.target({ hostKey: ecdsa.publicKey }))).fingerprint).toBe(ecdsa.fingerprint);
  expect((await connectAndRun(sshd.target({ hostKey: ed25519.fingerprint }))).fingerprint).toBe(ed25519.fingerprint);
});

test('connects with a known_hosts file: plain [host]:port entry, and the same entry hashed by ssh-keygen -H', async () => {
  const file = path.join(sshd.dir, 'known_hosts_plain');
  writeFileSync(file, `# pinned\nunrelated.example ${keyOnly(sshd.hostKeys.ecdsa.publicKey)}\n[127.0.0.1]:${sshd.port} ${keyOnly(sshd.hostKeys.ed25519.publicKey)}\n`);
  expect((await connectAndRun(sshd.target({ hostKey: undefined, knownHosts: file }))).fingerprint).toBe(sshd.hostKeys.ed25519.fingerprint);

  const hashed = path.join(sshd.dir, 'known_hosts_hashed');
  writeFileSync(hashed, `[127.0.0.1]:${sshd.port} ${keyOnly(sshd.hostKeys.ecdsa.publicKey)}\n`);
  await run('ssh-keygen', ['-H', '-f', hashed]);
  const text = readFileSync(hashed, 'utf8');
  expect(text).toMatch(/^\|1\|[^ ]+ ecdsa-sha2-nistp256 /);
  expect(text).not.toContain('127.0.0.1');
  expect((await connectAndRun(sshd.target({ hostKey: undefined, knownHosts: hashed }))).fingerprint).toBe(sshd.hostKeys.ecdsa.fingerprint);
});

test('a wrong host key is refused before authentication, naming host, both fingerprints and the fix; nothing runs', async () => {
  const impostor = await keygen(path.join(sshd.dir, 'impostor'), 'ed25519');
  const pinned = readFileSync(`${impostor}.pub`, 'utf8').trim();
  const canary = path.join(sshd.dir, 'canary-wrong-key');
  const logBefore = readFileSync(sshd.logFile, 'utf8').length;
  const attempt = async (target: SshTarget) => {
    const client = await SshClient.connect(target);
    await client.run(['touch', canary]);
    await client.close();
  };
  const err = await attempt(sshd.target({ hostKey: pinned })).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(HostKeyMismatchError);
  const mismatch = err as HostKeyMismatchError;
  expect(mismatch.host).toBe(`127.0.0.1:${sshd.port}`);
  expect(mismatch.message).toContain(`127.0.0.1:${sshd.port}`);
  expect(mismatch.message).toContain(`the server offered ssh-ed25519 ${sshd.hostKeys.ed25519.fingerprint}`);
  const impostorFingerprint = await keygenFingerprint(`${impostor}.pub`);
  expect(mismatch.expected).toEqual([`ssh-ed25519 ${impostorFingerprint} (hostKey)`]);
  expect(mismatch.message).toContain(`the pin expects ssh-ed25519 ${impostorFingerprint} (hostKey)`);
  expect(mismatch.hint).toMatch(/update hostKey or knownHosts/);

  // A wrong fingerprint, and a pinned type the server does not hold, are refused the same way.
  await expect(attempt(sshd.target({ hostKey: `SHA256:${'A'.repeat(43)}` }))).rejects.toThrow(/expects SHA256:A{43} \(hostKey\)/);
  const rsa = path.join(sshd.dir, 'impostor_rsa');
  await run('ssh-keygen', ['-q', '-t', 'rsa', '-b', '2048', '-N', '', '-f', rsa]);
  await expect(attempt(sshd.target({ hostKey: readFileSync(`${rsa}.pub`, 'utf8') }))).rejects.toThrow(/offered no ssh-rsa host key/);

  expect(existsSync(canary)).toBe(false);
  // sshd never saw a key offered for authentication.
  expect(readFileSync(sshd.logFile, 'utf8').slice(logBefore)).not.toMatch(/Accepted publickey|Failed publickey|Postponed publickey/);
});

test('a missing pin is refused before connecting; a bad credential is an SshAuthError', async () => {
  const canary = path.join(sshd.dir, 'canary-no-pin');
  await expect(SshClient.connect(sshd.target({ hostKey: undefined }))).rejects.toThrow(HostKeyNotPinnedError);
  await expect(SshClient.connect(sshd.target({ hostKey: undefined }))).rejects.toThrow(/never trusts a host key on first use/);
  await expect(SshClient.connect(sshd.target({ hostKey: undefined, knownHosts: path.join(sshd.dir, 'nope') }))).rejects.toThrow(HostKeyNotPinnedError);
  const empty = path.join(sshd.dir, 'known_hosts_other');
  writeFileSync(empty, `127.0.0.1 ${keyOnly(sshd.hostKeys.ed25519.publicKey)}\n`); // port 22 only, not ours
  await expect(SshClient.connect(sshd.target({ hostKey: undefined, knownHosts: empty }))).rejects.toThrow(`has no key for [127.0.0.1]:${sshd.port}`);
  expect(existsSync(canary)).toBe(false);

  const stranger = await keygen(path.join(sshd.dir, 'stranger'), 'ed25519');
  await expect(SshClient.connect(sshd.target({ identityFile: stranger }))).rejects.toThrow(SshAuthError);
});
