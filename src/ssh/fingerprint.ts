/**
 * OpenSSH public keys and their SHA256 fingerprints, computed exactly as `ssh-keygen -lf` does:
 * unpadded base64 of sha256 over the key's wire-format blob (the base64 field of the key line).
 */
import { createHash } from 'node:crypto';
import { sshPublicKeyProblem } from '../platform/openssh';

// The spec check reads the key type out of a blob too, so it is defined there, once.
export { blobKeyType } from '../platform/openssh';

/** A parsed OpenSSH public key line `type base64 [comment]`. */
export interface PublicKey {
  readonly type: string;
  /** The wire-format key blob (what the server sends during key exchange). */
  readonly blob: Buffer;
  readonly comment?: string;
}

/** Parse an OpenSSH public key line; throws TypeError naming the problem (never echoes the line: it may be a pasted private key). */
export function parsePublicKey(line: string): PublicKey {
  const problem = sshPublicKeyProblem(line);
  if (problem) throw new TypeError(problem);
  const [type, data, ...comment] = line.trim().split(/\s+/) as [string, string, ...string[]];
  return { type, blob: Buffer.from(data, 'base64'), comment: comment.length > 0 ? comment.join(' ') : undefined };
}

/**
 * `SHA256:…` fingerprint of a public key, given as an OpenSSH key line or a wire-format blob.
 * Equal to what `ssh-keygen -lf key.pub` prints, so a Foundry-recorded node key and an operator's
 * copy-pasted fingerprint compare as strings.
 */
export function sshFingerprint(key: string | Buffer): string {
  const blob = typeof key === 'string' ? parsePublicKey(key).blob : key;
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}
