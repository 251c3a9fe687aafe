/**
 * The payload codec (AES-256-GCM, key rotation, key configuration) and its HTTP endpoint, in
 * process: no Temporal server needed. The real-server checks are in test/workflow/codec.test.ts.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { JSONToPayload, payloadToJSON } from '@temporalio/common/lib/proto-utils';
import { ConfigError } from '../../src/errors';
import {
  AesGcmPayloadCodec,
  ENCRYPTED_ENCODING,
  KEY_ID_METADATA,
  PayloadDecryptionError,
  codecDataConverter,
  codecKeyring,
  ensureHomeCodecKey,
  generateCodecKey,
  homeCodecKeyFile,
  loadCodecKeyring,
  parseCodecKey,
} from '../../src/temporal/codec';
import { startCodecServer, uiOrigins, type CodecServer } from '../../src/temporal/codec-server';

const ROOT = path.resolve(__dirname, '..', '..');
const SECRET = 'hunter2-s3cr3t-token-5f0c1e';
const str = (b?: Uint8Array | null) => Buffer.from(b ?? []).toString('utf8');

const keyA = generateCodecKey();
const keyB = generateCodecKey();
const ringOf = (...keys: string[]) => codecKeyring(keys.map((k, i) => parseCodecKey(k, `key ${i}`)), 'test');
const secretPayload = (): Payload => defaultPayloadConverter.toPayload({ password: SECRET, n: 42 })!;

const tmpDirs: string[] = [];
const tmpDir = () => {
  const d = mkdtempSync(path.join(os.tmpdir(), 'kubedos-codec-'));
  tmpDirs.push(d);
  return d;
};
afterAll(() => tmpDirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** Run fn with the codec variables set exactly as given (others removed), then restore. */
function withEnv<T>(vars: { KUBEDOS_CODEC_KEY?: string; KUBEDOS_CODEC_KEY_FILE?: string }, fn: () => T): T {
  const saved = { KUBEDOS_CODEC_KEY: process.env.KUBEDOS_CODEC_KEY, KUBEDOS_CODEC_KEY_FILE: process.env.KUBEDOS_CODEC_KEY_FILE };
  try {
    for (const k of Object.keys(saved) as Array<keyof typeof saved>) {
      if (vars[k] === undefined) delete process.env[k];
      else process.env[k] = vars[k];
    }
    return fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

async function decryptError(p: Promise<unknown>): Promise<PayloadDecryptionError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PayloadDecryptionError);
  return err as PayloadDecryptionError;
}

describe('AesGcmPayloadCodec', () => {
  const codec = new AesGcmPayloadCodec(ringOf(keyA));

  test('round trip: the whole payload is sealed, metadata included, and comes back identical', async () => {
    const original = secretPayload();
    const [encrypted] = await codec.encode([original]);
    expect(str(encrypted!.metadata!.encoding)).toBe(ENCRYPTED_ENCODING);
    expect(str(encrypted!.metadata![KEY_ID_METADATA])).toBe(parseCodecKey(keyA, 'k').id);
    expect(Object.keys(encrypted!.metadata!).sort()).toEqual(['encoding', KEY_ID_METADATA].sort());
    const wire = Buffer.from(encrypted!.data!);
    expect(wire.includes(SECRET)).toBe(false);
    expect(wire.includes('json/plain')).toBe(false); // the inner encoding is hidden too
    // nonce (12) + the serialized payload + tag (16)
    expect(wire.length).toBeGreaterThan(28 + str(original.data).length);

    const [decoded] = await codec.decode([encrypted!]);
    expect(str(decoded!.metadata!.encoding)).toBe('json/plain');
    expect(Buffer.from(decoded!.data!).equals(Buffer.from(original.data!))).toBe(true);
    expect(defaultPayloadConverter.fromPayload(decoded!)).toEqual({ password: SECRET, n: 42 });
  });

  test('a fresh nonce per payload: the same value never encrypts to the same bytes', async () => {
    const [a, b] = await codec.encode([secretPayload(), secretPayload()]);
    expect(Buffer.from(a!.data!).subarray(0, 12).equals(Buffer.from(b!.data!).subarray(0, 12))).toBe(false);
    expect(Buffer.from(a!.data!).equals(Buffer.from(b!.data!))).toBe(false);
  });

  test('payloads that are not encrypted (runs from before the codec) pass through decode unchanged', async () => {
    const plain = secretPayload();
    expect((await codec.decode([plain]))[0]).toBe(plain);
    // undefined, null and binary payloads survive the round trip as well
    for (const value of [undefined, null, new Uint8Array([0, 1, 255])]) {
      const [enc] = await codec.encode([defaultPayloadConverter.toPayload(value)!]);
      expect(defaultPayloadConverter.fromPayload((await codec.decode([enc!]))[0]!)).toEqual(value);
    }
  });

  test.each([
    ['a ciphertext byte', (d: Buffer) => (d[20]! ^= 0x01)],
    ['a nonce byte', (d: Buffer) => (d[0]! ^= 0x80)],
    ['a tag byte', (d: Buffer) => (d[d.length - 1]! ^= 0x01)],
  ])('flipping %s is detected (authentication fails)', async (_what, flip) => {
    const [encrypted] = await codec.encode([secretPayload()]);
    const data = Buffer.from(encrypted!.data!);
    flip(data);
    const err = await decryptError(codec.decode([{ ...encrypted!, data }]));
    expect(err.message).toMatch(/failed authentication: it was altered or corrupted/);
    expect(err.keyId).toBe(parseCodecKey(keyA, 'k').id);
  });

  test('a truncated payload and one that names no key are refused', async () => {
    const [encrypted] = await codec.encode([secretPayload()]);
    expect((await decryptError(codec.decode([{ ...encrypted!, data: Buffer.from(encrypted!.data!).subarray(0, 20) }]))).message).toMatch(/truncated/);
    const noKey = { metadata: { encoding: encrypted!.metadata!.encoding }, data: encrypted!.data };
    expect((await decryptError(codec.decode([noKey]))).message).toMatch(/names no key/);
  });

  test('the wrong key cannot decrypt, and the error names the key ids and what to do', async () => {
    const [encrypted] = await codec.encode([secretPayload()]);
    const other = new AesGcmPayloadCodec(ringOf(keyB));
    const err = await decryptError(other.decode([encrypted!]));
    const idA = parseCodecKey(keyA, 'k').id;
    expect(err.keyId).toBe(idA);
    expect(err.message).toContain(`encrypted with key ${idA}, which is not among the keys from test (${parseCodecKey(keyB, 'k').id})`);
    expect(err.hint).toMatch(/KUBEDOS_CODEC_KEY/);

    // Relabelling the payload with the other key's id does not help: the tag does not verify.
    const relabelled = { ...encrypted!, metadata: { ...encrypted!.metadata, [KEY_ID_METADATA]: Buffer.from(parseCodecKey(keyB, 'k').id) } };
    expect((await decryptError(other.decode([relabelled]))).message).toMatch(/failed authentication/);
  });

  test('key rotation: the first key encrypts, every listed key decrypts', async () => {
    const before = new AesGcmPayloadCodec(ringOf(keyA));
    const after = new AesGcmPayloadCodec(ringOf(keyB, keyA));
    const [old] = await before.encode([secretPayload()]);
    const [fresh] = await after.encode([secretPayload()]);
    expect(str(fresh!.metadata![KEY_ID_METADATA])).toBe(parseCodecKey(keyB, 'k').id);
    expect(defaultPayloadConverter.fromPayload((await after.decode([old!]))[0]!)).toEqual({ password: SECRET, n: 42 });
    expect(defaultPayloadConverter.fromPayload((await after.decode([fresh!]))[0]!)).toEqual({ password: SECRET, n: 42 });
    // A process that only has the old key cannot read what the new one wrote.
    await decryptError(before.decode([fresh!]));
    // Retired: once keyA is dropped from the list, its payloads no longer decrypt.
    await decryptError(new AesGcmPayloadCodec(ringOf(keyB)).decode([old!]));
  });
});

describe('key configuration', () => {
  test('KUBEDOS_CODEC_KEY: one key, or a comma-separated rotation list; duplicates collapse', () => {
    const one = withEnv({ KUBEDOS_CODEC_KEY: keyA }, () => loadCodecKeyring({ home: tmpDir() }));
    expect(one.source).toBe('KUBEDOS_CODEC_KEY');
    expect(one.keys.map((k) => k.id)).toEqual([parseCodecKey(keyA, 'k').id]);
    const list = withEnv({ KUBEDOS_CODEC_KEY: ` ${keyB} ,${keyA},${keyB}` }, () => loadCodecKeyring({ home: tmpDir() }));
    expect(list.current.id).toBe(parseCodecKey(keyB, 'k').id);
    expect(list.keys.map((k) => k.id)).toEqual([parseCodecKey(keyB, 'k').id, parseCodecKey(keyA, 'k').id]);
  });

  test('URL-safe base64 and missing padding are the same key', () => {
    const urlSafe = keyA.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
    expect(parseCodecKey(urlSafe, 'x').id).toBe(parseCodecKey(keyA, 'x').id);
  });

  test.each([
    ['too short', Buffer.alloc(16, 7).toString('base64'), /^KUBEDOS_CODEC_KEY: the payload encryption key decodes to 16 bytes, not 32$/],
    ['too long', Buffer.alloc(48, 7).toString('base64'), /^KUBEDOS_CODEC_KEY: the payload encryption key decodes to 48 bytes, not 32$/],
    ['not base64', 'this is not a key! it is a passphrase of sorts', /^KUBEDOS_CODEC_KEY: the payload encryption key is not valid base64$/],
    ['hex instead of base64', 'ab'.repeat(32), /^KUBEDOS_CODEC_KEY: the payload encryption key decodes to 48 bytes, not 32$/],
    ['whitespace', '   ', /^KUBEDOS_CODEC_KEY: the payload encryption key is empty$/],
  ])('a malformed KUBEDOS_CODEC_KEY (%s) is a ConfigError naming the variable, never echoing the value', (_what, value, message) => {
    const err = configError(() => withEnv({ KUBEDOS_CODEC_KEY: value }, () => loadCodecKeyring({ home: tmpDir() })));
    expect(err.message).toMatch(message);
    if (value.trim()) expect(`${err.message} ${err.hint}`).not.toContain(value.trim());
    expect(err.hint).toMatch(/openssl rand -base64 32/);
  });

  test('the bad entry of a rotation list is named by its position', () => {
    const err = configError(() => withEnv({ KUBEDOS_CODEC_KEY: `${keyA},nope` }, () => loadCodecKeyring({ home: tmpDir() })));
    expect(err.message).toBe('KUBEDOS_CODEC_KEY (entry 2): the payload encryption key decodes to 3 bytes, not 32');
  });

  test('KUBEDOS_CODEC_KEY_FILE: one key per line, comments and blank lines skipped; errors name file and line', () => {
    const dir = tmpDir();
    const file = path.join(dir, 'keys');
    writeFileSync(file, `# current\n${keyB}\n\n${keyA}  # retired 2025-01\n`);
    const ring = withEnv({ KUBEDOS_CODEC_KEY_FILE: file }, () => loadCodecKeyring({ home: dir }));
    expect(ring.keys.map((k) => k.id)).toEqual([parseCodecKey(keyB, 'k').id, parseCodecKey(keyA, 'k').id]);
    expect(ring.source).toBe(`KUBEDOS_CODEC_KEY_FILE ${file}`);

    writeFileSync(file, `${keyA}\n# next\nAAAA\n`);
    expect(configError(() => withEnv({ KUBEDOS_CODEC_KEY_FILE: file }, () => loadCodecKeyring({ home: dir }))).message).toBe(
      `KUBEDOS_CODEC_KEY_FILE ${file} line 3: the payload encryption key decodes to 3 bytes, not 32`,
    );
    writeFileSync(file, '# nothing here\n');
    expect(configError(() => withEnv({ KUBEDOS_CODEC_KEY_FILE: file }, () => loadCodecKeyring({ home: dir }))).message).toBe(
      `KUBEDOS_CODEC_KEY_FILE ${file}: no payload encryption key`,
    );
    const missing = path.join(dir, 'nope');
    expect(configError(() => withEnv({ KUBEDOS_CODEC_KEY_FILE: missing }, () => loadCodecKeyring({ home: dir }))).message).toBe(
      `KUBEDOS_CODEC_KEY_FILE: cannot read "${missing}"`,
    );
  });

  test('both variables set is refused rather than silently preferring one', () => {
    const err = configError(() => withEnv({ KUBEDOS_CODEC_KEY: keyA, KUBEDOS_CODEC_KEY_FILE: '/dev/null' }, () => loadCodecKeyring({ home: tmpDir() })));
    expect(err.message).toBe('KUBEDOS_CODEC_KEY and KUBEDOS_CODEC_KEY_FILE are both set');
  });

  test('with neither, a key is generated under KUBEDOS_HOME (0600 in a 0700 dir) and reused', () => {
    const home = tmpDir();
    const first = withEnv({}, () => loadCodecKeyring({ home }));
    const file = homeCodecKeyFile(home);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    expect(parseCodecKey(readFileSync(file, 'utf8'), 'file').id).toBe(first.current.id);
    expect(first.source).toContain(file);
    expect(withEnv({}, () => loadCodecKeyring({ home })).current.id).toBe(first.current.id);
    // Another home is another key.
    expect(withEnv({}, () => loadCodecKeyring({ home: tmpDir() })).current.id).not.toBe(first.current.id);
    // …and an explicit key wins over the generated one.
    expect(withEnv({ KUBEDOS_CODEC_KEY: keyA }, () => loadCodecKeyring({ home })).current.id).toBe(parseCodecKey(keyA, 'k').id);
  });

  test('a damaged generated key file is an error, never silently replaced', () => {
    const home = tmpDir();
    ensureHomeCodecKey(home);
    writeFileSync(homeCodecKeyFile(home), 'garbage\n');
    const err = configError(() => withEnv({}, () => loadCodecKeyring({ home })));
    expect(err.message).toContain(`KUBEDOS_HOME=${home}`);
    expect(err.hint).toMatch(/restore the file from a backup/);
    expect(readFileSync(homeCodecKeyFile(home), 'utf8')).toBe('garbage\n');
  });

  test('processes racing to generate the home key all end up with the same one', async () => {
    const home = tmpDir();
    // Each child loads the module, says ready, and generates only when released, so the first
    // uses really overlap.
    const script = `const { ensureHomeCodecKey } = require('./src/temporal/codec');
      process.stdout.write('ready\\n');
      process.stdin.once('data', () => process.stdout.write('id=' + ensureHomeCodecKey(${JSON.stringify(home)}).current.id));`;
    const children = Array.from({ length: 4 }, () => {
      const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', '-e', script], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
      let out = '';
      const ready = new Promise<void>((resolve) => child.stdout.on('data', (d) => (out += d) && out.includes('ready') && resolve()));
      const done = new Promise<string>((resolve, reject) => {
        child.on('error', reject);
        child.on('close', (code) => (code === 0 ? resolve(/id=(\w+)/.exec(out)?.[1] ?? '') : reject(new Error(`exit ${code}: ${out}`))));
      });
      return { child, ready, done };
    });
    await Promise.all(children.map((c) => c.ready));
    for (const c of children) c.child.stdin.end('go\n');
    const ids = await Promise.all(children.map((c) => c.done));
    expect(ids[0]).toMatch(/^[0-9a-f]{16}$/);
    expect(new Set(ids).size).toBe(1);
    expect(ids[0]).toBe(parseCodecKey(readFileSync(homeCodecKeyFile(home), 'utf8'), 'file').id);
  });

  test('codecDataConverter reads the environment', async () => {
    const dc = withEnv({ KUBEDOS_CODEC_KEY: keyB }, () => codecDataConverter());
    const [enc] = await dc.payloadCodecs![0]!.encode([secretPayload()]);
    expect(str(enc!.metadata![KEY_ID_METADATA])).toBe(parseCodecKey(keyB, 'k').id);
  });
});

describe('codec endpoint (remote codec protocol)', () => {
  const UI = 'http://127.0.0.1:8233';
  const codec = new AesGcmPayloadCodec(ringOf(keyA));
  let server: CodecServer;
  beforeAll(async () => {
    server = await startCodecServer({ codec, allowedOrigins: uiOrigins(UI) });
  });
  afterAll(() => server?.close());

  const post = (op: string, payloads: Payload[], headers: Record<string, string> = {}) =>
    fetch(`${server.url}/${op}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Namespace': 'default', ...headers },
      body: JSON.stringify({ payloads: payloads.map(payloadToJSON) }),
    });

  test('uiOrigins: the UI origin under both loopback names', () => {
    expect(uiOrigins('http://127.0.0.1:8233/')).toEqual(['http://127.0.0.1:8233', 'http://localhost:8233']);
    expect(uiOrigins('https://temporal.example.com/ui')).toEqual(['https://temporal.example.com']);
  });

  test('POST /decode from the UI origin returns the cleartext payload, with CORS and credentials', async () => {
    const [encrypted] = await codec.encode([secretPayload()]);
    const res = await post('decode', [encrypted!], { Origin: UI });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe(UI);
    expect(res.headers.get('access-control-allow-credentials')).toBe('true');
    expect(res.headers.get('vary')).toMatch(/Origin/);
    const body = (await res.json()) as { payloads: Parameters<typeof JSONToPayload>[0][] };
    expect(body.payloads).toHaveLength(1);
    expect(defaultPayloadConverter.fromPayload(JSONToPayload(body.payloads[0]!))).toEqual({ password: SECRET, n: 42 });
  });

  test('POST /encode then /decode round-trips; without an Origin (the temporal CLI) no CORS is needed', async () => {
    const enc = await post('encode', [secretPayload()]);
    expect(enc.status).toBe(200);
    expect(enc.headers.get('access-control-allow-origin')).toBeNull();
    const encrypted = ((await enc.json()) as { payloads: Parameters<typeof JSONToPayload>[0][] }).payloads;
    expect(JSON.stringify(encrypted)).not.toContain(SECRET);
    expect(str(JSONToPayload(encrypted[0]!).metadata!.encoding)).toBe(ENCRYPTED_ENCODING);
    const dec = await fetch(`${server.url}/decode`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ payloads: encrypted }) });
    const payload = JSONToPayload(((await dec.json()) as { payloads: Parameters<typeof JSONToPayload>[0][] }).payloads[0]!);
    expect(defaultPayloadConverter.fromPayload(payload)).toEqual({ password: SECRET, n: 42 });
  });

  test('an omitted payloads list is the empty list (proto JSON): the temporal CLI sends {} for a signal or query with no argument', async () => {
    for (const op of ['encode', 'decode']) {
      const res = await fetch(`${server.url}/${op}`, { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-Namespace': 'default' }, body: '{}' });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ payloads: [] });
    }
  });

  test('the OPTIONS preflight allows POST with Content-Type and X-Namespace, with credentials', async () => {
    const res = await fetch(`${server.url}/decode`, {
      method: 'OPTIONS',
      headers: { Origin: 'http://localhost:8233', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type,x-namespace' },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe('http://localhost:8233');
    expect(res.headers.get('access-control-allow-methods')).toMatch(/\bPOST\b/);
    expect(res.headers.get('access-control-allow-headers')!.toLowerCase()).toEqual(expect.stringContaining('x-namespace'));
    expect(res.headers.get('access-control-allow-headers')!.toLowerCase()).toEqual(expect.stringContaining('content-type'));
    expect(res.headers.get('access-control-allow-credentials')).toBe('true');
  });

  test('another origin gets 403 and no CORS headers, on the preflight and on the request', async () => {
    const [encrypted] = await codec.encode([secretPayload()]);
    const pre = await fetch(`${server.url}/decode`, { method: 'OPTIONS', headers: { Origin: 'https://evil.example', 'Access-Control-Request-Method': 'POST' } });
    expect(pre.status).toBe(403);
    expect(pre.headers.get('access-control-allow-origin')).toBeNull();
    const res = await post('decode', [encrypted!], { Origin: 'https://evil.example' });
    expect(res.status).toBe(403);
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    expect(await res.text()).not.toContain(SECRET);
  });

  test('a Host that is not a loopback name is refused (DNS rebinding)', async () => {
    const [encrypted] = await codec.encode([secretPayload()]);
    const body = JSON.stringify({ payloads: [payloadToJSON(encrypted!)] });
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${server.url}/decode`, { method: 'POST', headers: { Host: `rebound.example:${server.port}`, 'Content-Type': 'application/json' } }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on('error', reject);
      req.end(body);
    });
    expect(status).toBe(403);
  });

  test('errors: undecryptable payload 400 with the reason, bad JSON 400, wrong method 405, unknown path 404', async () => {
    const [foreign] = await new AesGcmPayloadCodec(ringOf(keyB)).encode([secretPayload()]);
    const res = await post('decode', [foreign!], { Origin: UI });
    expect(res.status).toBe(400);
    expect(res.headers.get('access-control-allow-origin')).toBe(UI);
    expect(((await res.json()) as { error: string }).error).toMatch(/not among the keys/);
    expect((await fetch(`${server.url}/decode`, { method: 'POST', body: '{nope' })).status).toBe(400);
    const typo = await fetch(`${server.url}/decode`, { method: 'POST', body: '{"payload": []}' });
    expect(typo.status).toBe(400);
    expect(((await typo.json()) as { error: string }).error).toMatch(/unknown field "payload"/);
    expect((await fetch(`${server.url}/decode`, { method: 'POST', body: '[]' })).status).toBe(400);
    expect((await fetch(`${server.url}/decode`, { method: 'POST', body: '{"payloads": {}}' })).status).toBe(400);
    expect((await fetch(`${server.url}/decode`)).status).toBe(405);
    expect((await fetch(`${server.url}/other`, { method: 'POST', body: '{}' })).status).toBe(404);
  });
});
