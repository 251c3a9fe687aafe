/** The SSH layer: pinned host keys, argv-only remote commands, verified resumable uploads, pooled connections. */
export { SshClient, targetLabel, type ConnectOptions, type ExecOptions, type ExecResult, type SshTarget } from './client';
export { blobKeyType, parsePublicKey, sshFingerprint, type PublicKey } from './fingerprint';
export { loadHostKeyPolicy, verifyHostKey, type HostKeyPins, type HostKeyPolicy, type PinnedKey } from './host-key';
export { entriesFor, hostFieldMatches, knownHostsName, parseKnownHosts, type KnownHostEntry, type KnownHostsFile } from './known-hosts';
export { SshPool, poolKey, type SshLease, type SshPoolOptions } from './pool';
export { quoteArg, quoteArgv, remoteCommand } from './quote';
export { uploadFile, type UploadOptions, type UploadProgress, type UploadResult } from './sftp-upload';
