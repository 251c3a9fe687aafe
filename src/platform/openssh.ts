/**
 * Recognising OpenSSH public keys and fingerprints, so a pasted private key, a truncated line or a
 * key of one type labelled as another is caught when the spec is read.
 */

/** Key types OpenSSH accepts in authorized_keys and known_hosts. */
export const SSH_KEY_TYPES = [
  'ssh-ed25519',
  'ssh-rsa',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'sk-ssh-ed25519@openssh.com',
  'sk-ecdsa-sha2-nistp256@openssh.com',
] as const;

/** `SHA256:` and 43 unpadded base64 characters, as `ssh-keygen -lf` prints. */
export const SHA256_FINGERPRINT_PATTERN = /^SHA256:[A-Za-z0-9+/]{43}$/;

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** The key type named inside a wire-format key blob (the base64 field: uint32 length, then the name), or undefined. */
export function blobKeyType(blob: Buffer): string | undefined {
  if (blob.length < 4) return undefined;
  const length = blob.readUInt32BE(0);
  if (length === 0 || length > 64 || blob.length < 4 + length) return undefined;
  return blob.subarray(4, 4 + length).toString('latin1');
}

/** What is wrong with an OpenSSH public key line (`type base64 [comment]`), or `undefined`. */
export function sshPublicKeyProblem(line: string): string | undefined {
  if (line.includes('PRIVATE KEY')) return 'this is a private key; paste the public key (the .pub file) instead';
  const [type, data] = line.trim().split(/\s+/);
  if (!type || !(SSH_KEY_TYPES as readonly string[]).includes(type)) {
    return `not an OpenSSH public key: expected "<type> <base64> [comment]" with type one of ${SSH_KEY_TYPES.join(', ')}`;
  }
  if (!data || !BASE64.test(data)) return `not an OpenSSH public key: the key data after "${type}" is not base64`;
  const inner = blobKeyType(Buffer.from(data, 'base64'));
  if (inner !== type) return `not an OpenSSH public key: the data encodes ${inner ? `a "${inner}"` : 'no'} key, not "${type}" (truncated or mislabelled?)`;
  return undefined;
}

/** What is wrong with a host key pin (a public key line or a SHA256 fingerprint), or `undefined`. */
export function hostKeyPinProblem(pin: string): string | undefined {
  if (pin.startsWith('SHA256:')) {
    return SHA256_FINGERPRINT_PATTERN.test(pin) ? undefined : 'malformed fingerprint: expected SHA256: followed by 43 base64 characters (ssh-keygen -lf prints it)';
  }
  if (/^MD5:|^([0-9a-f]{2}:){15}[0-9a-f]{2}$/i.test(pin)) return 'MD5 fingerprints are not accepted; use the SHA256 fingerprint or the public key line';
  const problem = sshPublicKeyProblem(pin);
  return problem ? `${problem}; or give its SHA256 fingerprint` : undefined;
}
