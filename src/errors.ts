/**
 * Typed errors of the domain core, in one place (a few live beside their family: NodeUnhealthyError
 * in health/, PayloadDecryptionError in temporal/). A failure's `name` is its class name and its
 * class says whether running the same step again may help: at the activity boundary
 * (src/temporal/activity-failures.ts) every KubedosError becomes an ApplicationFailure of that
 * type, non-retryable unless the class is `retryable`, with its hint and cause chain in the
 * details, so workflows, retry policies and the CLI all read the same meaning.
 */

/** Base class: every KubeDos error carries a short hint telling the user what to do about it. */
export class KubedosError extends Error {
  /**
   * Whether the same step may succeed when run again: transient failures (a network, a busy or
   * restarting host, a throttled API) are; bad input, missing things and refusals are not.
   * Set per class; an instance may say otherwise (`options.retryable`). @default false
   */
  static readonly retryable: boolean = false;
  /** This error's retryability: its class's, unless the thrower knew better. */
  readonly retryable: boolean;

  constructor(
    message: string,
    /** What the user can do about it; printed after the message by the CLI. */
    readonly hint?: string,
    options?: { cause?: unknown; retryable?: boolean },
  ) {
    super(message, options);
    this.name = new.target.name;
    this.retryable = options?.retryable ?? (new.target as typeof KubedosError).retryable;
  }
}

/** One problem found in a spec file, located by its path in the document. */
export interface SpecIssue {
  /** Dotted path such as `images.worker.outputs[2]`; empty for the document root. */
  readonly path: string;
  readonly message: string;
  /** `file:line:column` where the offending node starts, when known. */
  readonly location?: string;
}

/** The spec is invalid; every problem found is listed, not just the first. */
export class SpecError extends KubedosError {
  constructor(
    readonly file: string,
    readonly issues: readonly SpecIssue[],
  ) {
    super(
      `${file}: ${issues.length} problem${issues.length === 1 ? '' : 's'} in the spec`,
      'fix each listed field; `kubedos schema` prints the JSON Schema for editor completion',
    );
  }
}

/** An external tool is not installed or not usable. */
export class ToolMissingError extends KubedosError {
  constructor(
    readonly tool: string,
    hint = 'run scripts/setup (it installs every tool KubeDos needs)',
  ) {
    super(`required tool "${tool}" was not found on PATH`, hint);
  }
}

/** An external tool ran and failed. Carries what is needed to reproduce and diagnose it. */
export class ToolFailedError extends KubedosError {
  static override readonly retryable = true;
  constructor(
    readonly tool: string,
    readonly argv: readonly string[],
    readonly exitCode: number | undefined,
    readonly signal: string | undefined,
    readonly stderrTail: string,
  ) {
    const how = signal ? `was killed by ${signal}` : `exited with code ${exitCode}`;
    super(`${tool} ${how}${stderrTail ? `:\n${stderrTail}` : ''}`);
  }
}

/** The operation was cancelled (AbortSignal fired); not a failure of the tool. */
export class CancelledError extends KubedosError {
  constructor(what: string) {
    super(`${what} was cancelled`);
  }
}

/** Temporal could not be reached or the embedded stack could not be started. */
export class TemporalUnavailableError extends KubedosError {
  static override readonly retryable = true;
}

/** A configuration value (environment variable or option) is malformed. */
export class ConfigError extends KubedosError {}

/** A build plan cannot be built; every problem is listed. */
export class BuildPlanError extends KubedosError {
  constructor(readonly problems: readonly string[]) {
    super(`the build plan is invalid:\n  - ${problems.join('\n  - ')}`, 'fix the listed fields of the image spec');
  }
}

/** A package pinned by the lock is neither in the .deb cache nor (any longer) on the mirror. */
export class LockedPackageUnavailableError extends KubedosError {
  constructor(
    readonly packageName: string,
    readonly version: string,
    readonly detail: string,
  ) {
    super(
      `locked package ${packageName} ${version} is neither in the .deb cache nor on the mirror (${detail})`,
      'restore the .deb cache the lock was made with, or refresh the lock (build without it) to move to current packages',
    );
  }
}

/** The image build failed in a way that is not one tool's failure (inconsistent layer, bad lock). */
export class BuildFailedError extends KubedosError {}

/** The artifact store refused a request: a malformed digest or ref, bad credentials, no bucket, inconsistent content. */
export class StoreError extends KubedosError {}

/** The store could not be reached or asked to slow down (refused connection, timeout, 5xx, throttling): worth retrying. */
export class StoreUnavailableError extends StoreError {
  static override readonly retryable = true;
}

/** A blob or ref is not in the store: retrying finds it no more than the first time did. */
export class StoreObjectNotFoundError extends StoreError {}

/** Bytes read back do not hash to the digest they are stored under: tampering or corruption. */
export class DigestMismatchError extends KubedosError {
  constructor(
    readonly expected: string,
    readonly actual: string,
    readonly where: string,
  ) {
    super(`${where}: content hashes to sha256:${actual}, expected sha256:${expected}`, 'the blob is corrupt or was tampered with: delete it and publish again');
  }
}

/** A signature does not verify against the allowed signers, or is missing: refuse the artifact. */
export class SignatureInvalidError extends KubedosError {
  constructor(
    /** What was signed (e.g. `manifest sha256:…`). */
    readonly subject: string,
    readonly detail: string,
  ) {
    super(
      `the signature of ${subject} is not valid: ${detail}`,
      'the manifest was not signed by a trusted Foundry key or was altered after signing; check the allowed_signers file, and republish from a trusted build',
    );
  }
}

/** A blob is in the store but no signed manifest references it: it was never published. */
export class ArtifactNotPublishedError extends KubedosError {
  constructor(readonly sha256: string, readonly where: string) {
    super(
      `sha256:${sha256} in ${where} is not referenced by any signed manifest`,
      'publish the build (publishBuild) or name the manifest that should reference it',
    );
  }
}

// --- SSH (src/ssh) ---

/** No host key is pinned for an SSH host (no hostKey, no knownHosts entry): KubeDos never trusts on first use. */
export class HostKeyNotPinnedError extends KubedosError {
  constructor(
    /** `host:port` */
    readonly host: string,
    readonly detail: string,
  ) {
    super(
      `refusing to connect to ${host}: ${detail}`,
      'pin the host key: set hostKey to the host\'s public key line or its SHA256 fingerprint (read it on the host with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`, not over the network), or point knownHosts at a known_hosts file with an entry for the host',
    );
  }
}

/** The SSH server offered a host key that is not the pinned one (or a revoked one): the connection was refused before authenticating. */
export class HostKeyMismatchError extends KubedosError {
  constructor(
    /** `host:port` */
    readonly host: string,
    /** The pinned keys, each `type SHA256:… (source)`. */
    readonly expected: readonly string[],
    /** The key the server offered, `type SHA256:…`, or a description when it offered none of the pinned types. */
    readonly offered: string,
    readonly revoked = false,
  ) {
    super(
      revoked
        ? `host key verification failed for ${host}: the server offered ${offered}, which is marked @revoked`
        : `host key verification failed for ${host}: the server offered ${offered}, but the pin expects ${expected.join(' or ')}`,
      'if the host was legitimately re-keyed (reinstalled, node recreated), confirm the new key on the host itself (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`) and update hostKey or knownHosts; otherwise do not connect: the connection may be intercepted',
    );
  }
}

/** The SSH connection could not be made or was lost (network, timeout, handshake). Usually worth retrying. */
export class SshConnectError extends KubedosError {
  static override readonly retryable = true;
  constructor(
    /** `user@host:port` */
    readonly target: string,
    readonly detail: string,
    options?: { cause?: unknown; hint?: string },
  ) {
    super(`ssh ${target}: ${detail}`, options?.hint ?? 'check that the host is up, sshd listens on that port and no firewall is in the way', { cause: options?.cause });
  }
}

/** The SSH server refused every offered credential (or none could be loaded). Not worth retrying. */
export class SshAuthError extends KubedosError {
  constructor(
    /** `user@host:port` */
    readonly target: string,
    readonly detail: string,
    hint = 'put the public key of identityFile (or of a key in the SSH agent) into ~/.ssh/authorized_keys of that user on the host',
    options?: { cause?: unknown },
  ) {
    super(`ssh ${target}: authentication failed: ${detail}`, hint, options);
  }
}

/** An argv cannot be turned into a remote command safely (empty, NUL byte, option-like program name). */
export class InvalidArgvError extends KubedosError {
  constructor(readonly detail: string) {
    super(`invalid remote command: ${detail}`, 'remote commands are argv arrays of strings without NUL bytes, starting with the program to run');
  }
}

/** A remote command ran and failed. Carries what is needed to reproduce and diagnose it. */
export class RemoteCommandFailedError extends KubedosError {
  static override readonly retryable = true;
  constructor(
    /** `user@host:port` */
    readonly target: string,
    readonly argv: readonly string[],
    readonly exitCode: number | undefined,
    readonly signal: string | undefined,
    readonly stderrTail: string,
  ) {
    const how = signal ? `was killed by SIG${signal}` : exitCode === undefined ? 'ended without an exit status' : `exited with code ${exitCode}`;
    super(`${target}: ${argv[0]} ${how}${stderrTail ? `:\n${stderrTail}` : ''}`);
  }
}

/** A remote command did not finish within its timeout; it was signalled and its channel closed. */
export class RemoteCommandTimeoutError extends KubedosError {
  static override readonly retryable = true;
  constructor(
    /** `user@host:port` */
    readonly target: string,
    readonly argv: readonly string[],
    readonly timeoutMs: number,
  ) {
    super(`${target}: ${argv[0]} did not finish within ${timeoutMs} ms and was stopped`, 'raise the timeout if the command is legitimately slow, or look at what it waits for on the host');
  }
}

/** An uploaded file does not hash to the expected digest; nothing was put in place. */
export class UploadDigestMismatchError extends KubedosError {
  static override readonly retryable = true;
  constructor(
    /** Where the bytes were hashed, e.g. `local file /x` or `root@h:22:/var/lib/…`. */
    readonly where: string,
    readonly expected: string,
    readonly actual: string,
    hint: string,
  ) {
    super(`${where} hashes to sha256:${actual}, expected sha256:${expected}`, hint);
  }
}

/** A target has no node by that id (never created, or already destroyed). */
export class TargetNodeNotFoundError extends KubedosError {
  constructor(
    readonly target: string,
    readonly nodeId: string,
    /** What was attempted: `start`, `check`, … */
    readonly action: string,
  ) {
    super(`cannot ${action} node ${nodeId}: target ${target} has no such node`, 'create it first (the fleet does), or look at `kubedos status --nodes`');
  }
}

/** A node's VM is not running while it was expected to boot (crashed, powered off, killed). */
export class NodeNotRunningError extends KubedosError {
  constructor(
    readonly nodeId: string,
    readonly target: string,
    /** The last lines of its console. */
    readonly consoleTail: string,
  ) {
    super(
      `node ${nodeId} on ${target} stopped running before it reported ready${consoleTail ? `; its console ended with:\n${consoleTail}` : ' (its console is empty)'}`,
      'the console shows how far it booted; a guest that powers off or panics in first boot is an image problem',
    );
  }
}

/** Every VM id of a target's range is taken (by KubeDos nodes, other VMs, or other cluster nodes). */
export class VmidRangeExhaustedError extends KubedosError {
  constructor(
    readonly target: string,
    readonly low: number,
    readonly high: number,
    /** Ids that were free when listed but taken by the time `qm create` ran. */
    readonly collisions: number,
  ) {
    super(
      `target ${target}: no free VM id in vmidRange [${low}, ${high}]${collisions ? ` (${collisions} taken while creating)` : ''}`,
      'widen vmidRange in the target spec, or remove orphaned nodes (`kubedos status --nodes`)',
    );
  }
}

/** A VM is not KubeDos's (outside vmidRange, no kubedos tag, or no KubeDos record): it is never touched. */
export class NotOwnedVmError extends KubedosError {
  constructor(
    readonly target: string,
    readonly vmid: number,
    readonly nodeId: string,
  ) {
    super(`target ${target}: refusing to touch VM ${vmid}: it is not KubeDos node ${nodeId}`, 'KubeDos only stops and destroys the VMs it created inside vmidRange; remove others by hand');
  }
}

/** A node's address comes from the QEMU guest agent, which is not (yet) answering in the guest. */
export class GuestAgentUnavailableError extends KubedosError {
  static override readonly retryable = true;
  constructor(
    readonly nodeId: string,
    readonly target: string,
    readonly detail: string,
  ) {
    super(
      `node ${nodeId} on ${target} has no known address: ${detail}`,
      'the address of a bridged VM is learnt from the QEMU guest agent: install qemu-guest-agent in the image, or use a readiness health check',
    );
  }
}

// --- Deploying (src/targets, activities/deploy) ---

/** A node id is taken on the target by a node made from another image (a node is never reused for a new image). */
export class NodeImageConflictError extends KubedosError {
  constructor(
    readonly target: string,
    readonly nodeId: string,
    /** The image digest the existing node was made from. */
    readonly existingDigest: string,
  ) {
    super(
      `node ${nodeId} exists on ${target} with another image (${existingDigest.slice(0, 12)}); a node is never reused for a new image`,
      'destroy it first (`kubedos down`, or let the fleet replace it); `kubedos status --nodes` lists what the target holds',
    );
  }
}

/** A node has no address the worker can reach yet (not started, still starting). */
export class NodeAddressUnknownError extends KubedosError {
  static override readonly retryable = true;
  constructor(
    readonly target: string,
    readonly nodeId: string,
    readonly detail: string,
    hint = 'start the node first; its address is known once it runs',
    options?: { retryable?: boolean },
  ) {
    super(`node ${nodeId} on ${target} has no known address: ${detail}`, hint, options);
  }
}

/** A target was given no artifact, or one in a format its driver cannot deploy. */
export class ArtifactRequiredError extends KubedosError {
  readonly accepts: readonly string[];
  constructor(
    readonly target: string,
    readonly targetType: string,
    /** What the target type deploys (its descriptor's `accepts`). */
    accepts: readonly string[] | 'any',
    /** The format it was given, when it was given one. */
    readonly got?: string,
  ) {
    const formats = accepts === 'any' ? ['an artifact'] : accepts;
    super(
      got === undefined
        ? `${targetType} target ${target} needs the image's ${formats.join(' or ')} artifact, and none was fetched`
        : `${targetType} target ${target} deploys ${formats.join(' or ')}, not ${got}`,
      `add ${formats[0]} to the image's outputs; a fleet deploys the first of ${formats.join(', ')} that its image has`,
    );
    this.accepts = formats;
  }
}

/** A QEMU machine protocol exchange failed (socket gone, no reply, an error answer). */
export class QmpError extends KubedosError {
  static override readonly retryable = true;
}

/** No worker polls the task queue a step was routed to: the step would wait for ever. */
export class PoolUnavailableError extends KubedosError {
  constructor(
    readonly pool: string,
    readonly taskQueue: string,
    readonly waitedMs: number,
  ) {
    super(
      `no worker of pool ${pool} is polling ${taskQueue} (waited ${Math.round(waitedMs / 1000)} s)`,
      `start it with \`kubedos stack start\` (the embedded stack; its log is $KUBEDOS_HOME/logs/worker-${pool}.log) or \`node dist/workers/${pool}.js\` on a host with its tools (\`kubedos doctor\` shows which)`,
    );
  }
}

// --- Publishing (activities/publish) ---

/** The build host no longer has what it staged, or its copy is damaged: the image must be built again, anywhere. */
export class ArtifactNotStagedError extends KubedosError {}

// --- Temporal cluster bootstrap (src/temporal/cluster-bootstrap.ts) ---

/**
 * The Temporal namespace KubeDos talks to is missing, or lacks KubeDos's search attributes (or has
 * one with another type), and KubeDos could not (or must not) fix it from here. The hint lists
 * the exact commands that do.
 */
export class ClusterNotReadyError extends KubedosError {
  readonly namespaceMissing: boolean;
  /** `Name (Type)` of each attribute the namespace lacks. */
  readonly missing: readonly string[];
  /** `Name is Text, needs Keyword` for each attribute registered with another type. */
  readonly wrongType: readonly string[];
  /** What the server refused, when it did. */
  readonly blocked: readonly string[];
  /** The commands to run (`temporal operator …`, or tcld / Cloud UI steps for Temporal Cloud). */
  readonly commands: readonly string[];
  constructor(
    readonly address: string,
    readonly namespace: string,
    detail: { namespaceMissing: boolean; missing: readonly string[]; wrongType: readonly string[]; blocked: readonly string[]; commands: readonly string[]; cloud: boolean },
  ) {
    const problems = [
      ...(detail.namespaceMissing ? [`namespace ${namespace} does not exist`] : []),
      ...(detail.missing.length && !detail.namespaceMissing ? [`search attributes missing: ${detail.missing.join(', ')}`] : []),
      ...(detail.wrongType.length ? [`search attributes with the wrong type: ${detail.wrongType.join(', ')}`] : []),
      ...detail.blocked,
    ];
    const onlyNamespace = detail.namespaceMissing && !detail.cloud && !detail.blocked.length;
    super(
      `the Temporal cluster at ${address} is not ready for KubeDos: ${problems.join('; ')}`,
      [
        onlyNamespace ? '`kubedos cluster init` creates the namespace and registers the search attributes; or run' : detail.cloud ? 'on Temporal Cloud:' : 'run',
        ...detail.commands.map((c) => `    ${c}`),
      ].join('\n'),
    );
    this.namespaceMissing = detail.namespaceMissing;
    this.missing = detail.missing;
    this.wrongType = detail.wrongType;
    this.blocked = detail.blocked;
    this.commands = detail.commands;
  }
}
