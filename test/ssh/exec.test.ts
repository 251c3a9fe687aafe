/**
 * Remote commands over a real sshd: argv reaches the program unchanged whatever it contains,
 * exit statuses and signals are reported, timeouts and cancellation stop the remote process,
 * agent auth, keepalive, connection reuse and the channel limit.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { CancelledError, RemoteCommandFailedError, RemoteCommandTimeoutError, SshAuthError, SshConnectError } from '../../src/errors';
import { SshClient, SshPool } from '../../src/ssh';
import { injectionCorpus } from '../support/injection-corpus';
import { livePidsWithArgv, startAgent, startSshd, type SshdServer } from '../support/sshd';

let sshd: SshdServer;
let client: SshClient;

beforeAll(async () => {
  sshd = await startSshd();
  client = await SshClient.connect(sshd.target());
});
afterAll(async () => {
  await client?.close();
  await sshd?.stop();
});

async function waitFor(what: string, predicate: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

test('the injection corpus reaches the remote program as exactly those argv elements, and runs nothing', async () => {
  const canary = path.join(sshd.dir, 'canary-exec');
  const corpus = injectionCorpus(canary);
  // The login shell's cwd (root's home) holds files, so an unquoted glob would expand there.
  const { stdout, stderr, exitCode } = await client.exec(['printf', '%s\\0', ...corpus]);
  expect({ exitCode, stderr }).toEqual({ exitCode: 0, stderr: '' });
  expect(stdout.split('\0').slice(0, -1)).toEqual(corpus);
  expect(existsSync(canary)).toBe(false);
});

test('hostile file names are created verbatim as paths and nothing else appears', async () => {
  const dir = path.join(sshd.dir, 'names');
  mkdirSync(dir);
  const canary = path.join(sshd.dir, 'canary-paths');
  const names = injectionCorpus(canary)
    .map((name) => name.replaceAll('/', '∕')) // a path separator cannot be part of one name
    .filter((name) => name !== '' && name !== '.' && name !== '..');
  await client.run(['touch', '--', ...names.map((name) => path.join(dir, name))]);
  expect(readdirSync(dir).sort()).toEqual([...new Set(names)].sort());
  expect(existsSync(canary)).toBe(false);
});

test('exit codes, stdout and stderr are reported; run() throws with the code and the stderr tail', async () => {
  const script = ['sh', '-c', 'echo out; for i in $(seq 1 30); do echo "err $i" >&2; done; exit 7'];
  const result = await client.exec(script);
  expect(result.exitCode).toBe(7);
  expect(result.stdout).toBe('out\n');
  const err = (await client.run(script).catch((e: unknown) => e)) as RemoteCommandFailedError;
  expect(err).toBeInstanceOf(RemoteCommandFailedError);
  expect(err.exitCode).toBe(7);
  expect(err.message).toMatch(new RegExp(`root@127\\.0\\.0\\.1:${sshd.port}: sh exited with code 7`));
  expect(err.stderrTail.split('\n')).toEqual(Array.from({ length: 20 }, (_, i) => `err ${i + 11}`));

  const killed = await client.exec(['sh', '-c', 'kill -KILL $$']);
  expect(killed).toMatchObject({ exitCode: null, signal: 'KILL' });
  await expect(client.run(['sh', '-c', 'kill -KILL $$'])).rejects.toThrow(/was killed by SIGKILL/);
  await expect(client.run(['false'])).rejects.toThrow(/false exited with code 1/);
});

test('stdin is fed from a buffer or a stream, and closed when none is given', async () => {
  const data = randomBytes(3 * 1024 * 1024 + 5);
  const digest = createHash('sha256').update(data).digest('hex');
  expect((await client.run(['sha256sum'], { stdin: data })).stdout).toBe(`${digest}  -\n`);
  expect((await client.run(['sha256sum'], { stdin: Readable.from([data.subarray(0, 1000), data.subarray(1000)]) })).stdout).toBe(`${digest}  -\n`);
  // `cat` would wait forever on an open stdin.
  expect(await client.run(['cat'], { timeoutMs: 5000 })).toMatchObject({ stdout: '', exitCode: 0 });
});

test('a timeout stops the remote process and rejects with RemoteCommandTimeoutError', async () => {
  const argv = ['sleep', '32.25'];
  const started = Date.now();
  const pending = client.exec(argv, { timeoutMs: 800 });
  await waitFor('the remote sleep to start', () => livePidsWithArgv(argv).length > 0);
  const err = (await pending.catch((e: unknown) => e)) as RemoteCommandTimeoutError;
  expect(err).toBeInstanceOf(RemoteCommandTimeoutError);
  expect(err.timeoutMs).toBe(800);
  expect(Date.now() - started).toBeLessThan(4000);
  await waitFor('the remote sleep to be gone', () => livePidsWithArgv(argv).length === 0, 3000);
});

test('an abort signal closes the channel and signals the remote process', async () => {
  const argv = ['sleep', '31.75'];
  const controller = new AbortController();
  const pending = client.exec(argv, { signal: controller.signal });
  await waitFor('the remote sleep to start', () => livePidsWithArgv(argv).length > 0);
  controller.abort();
  await expect(pending).rejects.toThrow(CancelledError);
  await waitFor('the remote sleep to be gone', () => livePidsWithArgv(argv).length === 0, 3000);
  // An already aborted signal runs nothing; the connection is still usable afterwards.
  await expect(client.exec(['touch', path.join(sshd.dir, 'canary-aborted')], { signal: controller.signal })).rejects.toThrow(CancelledError);
  expect(existsSync(path.join(sshd.dir, 'canary-aborted'))).toBe(false);
  expect((await client.run(['echo', 'still here'])).stdout).toBe('still here\n');
});

test('authenticates through a real ssh-agent when no identityFile is set; no agent is an SshAuthError', async () => {
  const agent = await startAgent(sshd.dir, sshd.identityFile);
  try {
    const viaAgent = await SshClient.connect(sshd.target({ identityFile: undefined }), { agentSocket: agent.socket });
    expect((await viaAgent.run(['id', '-un'])).stdout).toBe('root\n');
    await viaAgent.close();
  } finally {
    await agent.stop();
  }
  await expect(SshClient.connect(sshd.target({ identityFile: undefined }), { agentSocket: '' })).rejects.toThrow(SshAuthError);
});

test('a server that never greets fails within the connect timeout', async () => {
  const sockets: net.Socket[] = [];
  const silent = net.createServer((socket) => sockets.push(socket));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const { port } = silent.address() as net.AddressInfo;
  const started = Date.now();
  try {
    await expect(SshClient.connect(sshd.target({ port }), { connectTimeoutMs: 500 })).rejects.toThrow(SshConnectError);
    expect(Date.now() - started).toBeLessThan(3000);
  } finally {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => silent.close(resolve));
  }
});

test('keepalive notices a link that went silent: the running command fails with SshConnectError', async () => {
  // A TCP relay to sshd that can be frozen: it keeps the sockets open but stops forwarding.
  let frozen = false;
  const pairs: net.Socket[] = [];
  const relay = net.createServer((inbound) => {
    const outbound = net.connect(sshd.port, '127.0.0.1');
    pairs.push(inbound, outbound);
    inbound.on('data', (d) => !frozen && outbound.write(d));
    outbound.on('data', (d) => !frozen && inbound.write(d));
    inbound.on('error', () => undefined);
    outbound.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  const { port } = relay.address() as net.AddressInfo;
  try {
    const flaky = await SshClient.connect(sshd.target({ port }), { keepaliveIntervalMs: 200, keepaliveCountMax: 2 });
    const pending = flaky.exec(['sleep', '30.5']);
    await sleep(300);
    frozen = true;
    const started = Date.now();
    await expect(pending).rejects.toThrow(SshConnectError);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(flaky.closed).toBe(true);
    await expect(flaky.exec(['true'])).rejects.toThrow(/connection is closed/);
  } finally {
    for (const socket of pairs) socket.destroy();
    await new Promise((resolve) => relay.close(resolve));
  }
});

test('the pool shares one connection per target and pin, queues past MaxSessions, and closes idle ones', async () => {
  const pool = new SshPool({ idleMs: 150 });
  try {
    const [a, b] = await Promise.all([pool.acquire(sshd.target()), pool.acquire(sshd.target())]);
    expect(a.client).toBe(b.client);
    const byFingerprint = await pool.acquire(sshd.target({ hostKey: sshd.hostKeys.ed25519.fingerprint }));
    expect(byFingerprint.client).not.toBe(a.client);
    expect(pool.size).toBe(2);

    // sshd allows 10 sessions per connection; 14 concurrent commands must queue, not fail.
    const outputs = await Promise.all(Array.from({ length: 14 }, (_, i) => a.client.run(['sh', '-c', 'sleep 0.2; echo "$1"', 'sh', String(i)])));
    expect(outputs.map((o) => o.stdout)).toEqual(Array.from({ length: 14 }, (_, i) => `${i}\n`));

    a.release();
    await sleep(300);
    expect(a.client.closed).toBe(false); // b still holds it
    b.release();
    b.release(); // a second release is ignored
    byFingerprint.release();
    await waitFor('idle connections to close', () => a.client.closed && byFingerprint.client.closed, 3000);
    expect(pool.size).toBe(0);
    expect(await pool.use(sshd.target(), (c) => c.run(['echo', 'again']).then((r) => r.stdout))).toBe('again\n');
  } finally {
    await pool.close();
  }
  await expect(pool.acquire(sshd.target())).rejects.toThrow(/pool is closed/);
});
