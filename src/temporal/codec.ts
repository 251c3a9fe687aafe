/**
 * The payload codec: AES-256-GCM over each whole serialized Payload, so workflow and activity
 * inputs and results, signal and update arguments and memos reach Temporal (and its history) only
 * as ciphertext. Every client and every worker uses it (`codecDataConverter`); the Web UI and the
 * `temporal` CLI read runs through the codec endpoint (codec-server.ts).
 *
 * Wire format, the one Temporal's encryption samples use: metadata `encoding: binary/encrypted`
 * and `encryption-key-id: <id>`; data = 12-byte random nonce ‖ ciphertext ‖ 16-byte GCM tag, the
 * plaintext being the serialized Payload proto (metadata included, so even the payload's own
 * encoding is hidden). A key's id is derived from the key, so ids never need naming or agreeing.
 *
 * Keys: KUBEDOS_CODEC_KEY (comma-separated), else KUBEDOS_CODEC_KEY_FILE (one per line), else
 * `$KUBEDOS_HOME/keys/codec.key`, generated (0600) on first use so the embedded stack works with
 * no setup and every process on the same home shares it. The first key encrypts; every listed
 * key decrypts, which is how keys rotate.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes, randomUUID } from 'node:crypto';
import { chmodSync, linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { DataConverter, Payload, PayloadCodec } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { env } from '../config/env';
import { stateDir } from '../config/paths';
import { ConfigError, KubedosError } from '../errors';

/** `encoding` metadata of an encrypted payload. */
export const ENCRYPTED_ENCODING = 'binary/encrypted';
/** Metadata naming the key a payload was encrypted with. */
export const KEY_ID_METADATA = 'encryption-key-id';

const ALGORITHM = 'aes-256-gcm';
const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const KEY_HINT = 'a key is 32 random bytes in base64: generate one with `openssl rand -base64 32`';

export interface CodecKey {
  /** Derived from the key (16 hex digits of a domain-separated SHA-256); stored in each payload. */
  readonly id: string;
  readonly key: Buffer;
}

export interface CodecKeyring {
  /** Encrypts every new payload. */
  readonly current: CodecKey;
  /** Every key that decrypts, current first. */
  readonly keys: readonly CodecKey[];
  /** Where the keys came from, for messages: a variable name or a file. Never the key itself. */
  readonly source: string;
}

/** A payload could not be decrypted: unknown key, altered bytes, or not our format. */
export class PayloadDecryptionError extends KubedosError {
  constructor(
    message: string,
    /** Key id the payload names, when it names one. */
    readonly keyId: string | undefined,
    hint?: string,
    options?: { cause?: unknown },
  ) {
    super(message, hint, options);
  }
}

/** The id a key is known by: derived, so the same key has the same id everywhere. */
export function codecKeyId(key: Buffer): string {
  return createHash('sha256').update('kubedos payload codec key id\0').update(key).digest('hex').slice(0, 16);
}

/** A fresh random key, base64 (what KUBEDOS_CODEC_KEY holds). */
export function generateCodecKey(): string {
  return randomBytes(KEY_BYTES).toString('base64');
}

/**
 * One base64 key (standard or URL-safe alphabet, padding optional). `where` names the variable or
 * file line in the error; the value itself is never echoed, as it is a secret.
 */
export function parseCodecKey(text: string, where: string): CodecKey {
  const trimmed = text.trim();
  const normal = trimmed.replace(/-/g, '+').replace(/_/g, '/').replace(/=+$/, '');
  const key = /^[A-Za-z0-9+/]+$/.test(normal) ? Buffer.from(normal, 'base64') : Buffer.alloc(0);
  const canonical = key.toString('base64').replace(/=+$/, '');
  if (key.length !== KEY_BYTES || canonical !== normal) {
    const what = trimmed === '' ? 'is empty' : canonical !== normal ? 'is not valid base64' : `decodes to ${key.length} bytes, not ${KEY_BYTES}`;
    throw new ConfigError(`${where}: the payload encryption key ${what}`, KEY_HINT);
  }
  return { id: codecKeyId(key), key };
}

/** A keyring from keys in order (the first encrypts); duplicates are dropped. */
export function codecKeyring(keys: readonly CodecKey[], source: string): CodecKeyring {
  const unique = keys.filter((k, i) => keys.findIndex((o) => o.id === k.id) === i);
  if (!unique.length) throw new ConfigError(`${source}: no payload encryption key`, KEY_HINT);
  return { current: unique[0]!, keys: unique, source };
}

/** Keys of a key file: one per line, the first encrypts; blank lines and `#` comments skipped. */
function parseKeyFile(text: string, file: string, label: string): CodecKeyring {
  const keys: CodecKey[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const content = line.replace(/#.*$/, '').trim();
    if (content) keys.push(parseCodecKey(content, `${label} ${file} line ${i + 1}`));
  });
  return codecKeyring(keys, `${label} ${file}`);
}

/** `$home/keys/codec.key`: the key generated for a state directory. */
export function homeCodecKeyFile(home = stateDir()): string {
  return path.join(home, 'keys', 'codec.key');
}

/**
 * Read the state directory's key, generating it (mode 0600, in a 0700 directory) when missing.
 * Safe against concurrent first uses: the file appears complete or not at all, and the first
 * writer wins.
 */
export function ensureHomeCodecKey(home = stateDir()): CodecKeyring {
  const file = homeCodecKeyFile(home);
  const label = `the generated key file of KUBEDOS_HOME=${home},`;
  try {
    return parseKeyFile(readFileSync(file, 'utf8'), file, label);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      if (err instanceof ConfigError) {
        throw new ConfigError(err.message, 'restore the file from a backup; deleting it makes every run encrypted with it unreadable', { cause: err });
      }
      throw new ConfigError(`cannot read ${file}`, 'check the permissions of KUBEDOS_HOME', { cause: err });
    }
  }
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = path.join(path.dirname(file), `.codec-key-${randomUUID()}`);
  try {
    writeFileSync(tmp, `${generateCodecKey()}\n`, { mode: 0o600, flag: 'wx' });
    chmodSync(tmp, 0o600);
    try {
      linkSync(tmp, file); // fails if another process won the race: keep theirs
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  } finally {
    rmSync(tmp, { force: true });
  }
  return parseKeyFile(readFileSync(file, 'utf8'), file, label);
}

/**
 * The keys this process uses: KUBEDOS_CODEC_KEY, else KUBEDOS_CODEC_KEY_FILE, else the state
 * directory's generated key. Malformed keys are a ConfigError naming the variable (or file line).
 */
export function loadCodecKeyring(options: { home?: string } = {}): CodecKeyring {
  const inline = env('KUBEDOS_CODEC_KEY');
  const file = env('KUBEDOS_CODEC_KEY_FILE');
  if (inline !== undefined && file !== undefined) {
    throw new ConfigError('KUBEDOS_CODEC_KEY and KUBEDOS_CODEC_KEY_FILE are both set', 'set only one of them');
  }
  if (inline !== undefined) {
    const entries = inline.split(',');
    const keys = entries.map((e, i) => parseCodecKey(e, entries.length > 1 ? `KUBEDOS_CODEC_KEY (entry ${i + 1})` : 'KUBEDOS_CODEC_KEY'));
    return codecKeyring(keys, 'KUBEDOS_CODEC_KEY');
  }
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(`KUBEDOS_CODEC_KEY_FILE: cannot read "${file}"`, 'point it at a readable file with one base64 key per line', { cause: err });
    }
    return parseKeyFile(text, file, 'KUBEDOS_CODEC_KEY_FILE');
  }
  return ensureHomeCodecKey(options.home);
}

const utf8 = (s: string) => Buffer.from(s, 'utf8');
const text = (b: Uint8Array | null | undefined) => (b ? Buffer.from(b).toString('utf8') : undefined);

/** AES-256-GCM PayloadCodec: encrypts with the keyring's current key, decrypts with any of its keys. */
export class AesGcmPayloadCodec implements PayloadCodec {
  private readonly byId: ReadonlyMap<string, CodecKey>;

  constructor(readonly keyring: CodecKeyring) {
    this.byId = new Map(keyring.keys.map((k) => [k.id, k]));
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((p) => this.encrypt(p));
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((p) => this.decrypt(p));
  }

  /** One payload → its encrypted form. */
  encrypt(payload: Payload): Payload {
    const { id, key } = this.keyring.current;
    const plain = temporal.api.common.v1.Payload.encode(payload).finish();
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv(ALGORITHM, key, nonce, { authTagLength: TAG_BYTES });
    const data = Buffer.concat([nonce, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
    return { metadata: { encoding: utf8(ENCRYPTED_ENCODING), [KEY_ID_METADATA]: utf8(id) }, data };
  }

  /** One payload → cleartext. Payloads that are not encrypted (older runs) pass unchanged. */
  decrypt(payload: Payload): Payload {
    if (text(payload.metadata?.encoding) !== ENCRYPTED_ENCODING) return payload;
    const keyId = text(payload.metadata?.[KEY_ID_METADATA]);
    if (!keyId) throw new PayloadDecryptionError(`an encrypted payload names no key (no ${KEY_ID_METADATA} metadata)`, undefined);
    const entry = this.byId.get(keyId);
    if (!entry) {
      throw new PayloadDecryptionError(
        `a payload is encrypted with key ${keyId}, which is not among the keys from ${this.keyring.source} (${this.keyring.keys.map((k) => k.id).join(', ')})`,
        keyId,
        'give this process the same key as the process that wrote the payload (KUBEDOS_CODEC_KEY or KUBEDOS_CODEC_KEY_FILE); after a rotation, list the old keys after the current one',
      );
    }
    const data = Buffer.from(payload.data ?? new Uint8Array());
    if (data.length < NONCE_BYTES + TAG_BYTES) {
      throw new PayloadDecryptionError(`an encrypted payload (key ${keyId}) is truncated: ${data.length} bytes`, keyId);
    }
    const decipher = createDecipheriv(ALGORITHM, entry.key, data.subarray(0, NONCE_BYTES), { authTagLength: TAG_BYTES });
    decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
    let plain: Buffer;
    try {
      plain = Buffer.concat([decipher.update(data.subarray(NONCE_BYTES, data.length - TAG_BYTES)), decipher.final()]);
    } catch (err) {
      throw new PayloadDecryptionError(
        `an encrypted payload (key ${keyId}) failed authentication: it was altered or corrupted`,
        keyId,
        'the history holds bytes this key did not produce; do not trust this payload',
        { cause: err },
      );
    }
    return temporal.api.common.v1.Payload.decode(plain);
  }
}

/** The data converter every client and worker uses: the default payload converter plus this codec. */
export function codecDataConverter(keyring: CodecKeyring = loadCodecKeyring()): DataConverter {
  return { payloadCodecs: [new AesGcmPayloadCodec(keyring)] };
}
