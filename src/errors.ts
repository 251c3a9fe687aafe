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

// --- aws (src/targets/aws) ---

/** AWS refused the credentials, or the standard chain found none: nothing works until they are fixed. */
export class AwsCredentialsError extends KubedosError {
  constructor(
    readonly target: string,
    /** Where the credentials were looked for: the variables, the profile or the role it names. */
    readonly source: string,
    readonly code: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`target ${target}: AWS did not accept the credentials from ${source}: ${code}: ${detail}`, `fix ${source} on the cloud worker (the spec names a profile or a role, never a secret)`, options);
  }
}

/** The credentials are valid but may not do this (an IAM policy, a service role, an SCP). */
export class AwsUnauthorizedError extends KubedosError {
  constructor(
    readonly target: string,
    readonly operation: string,
    readonly code: string,
    detail: string,
    hint: string,
    options?: { cause?: unknown },
  ) {
    super(`target ${target}: ${operation} was refused: ${code}: ${detail}`, hint, options);
  }
}

/** AWS rejected a request as invalid (InvalidParameter*, a subnet, group or image that does not exist): the spec must change. */
export class AwsInvalidRequestError extends KubedosError {
  constructor(
    readonly target: string,
    readonly operation: string,
    readonly code: string,
    detail: string,
    hint: string,
    options?: { cause?: unknown },
  ) {
    super(`target ${target}: ${operation} failed: ${code}: ${detail}`, hint, options);
  }
}

/** Throttled (RequestLimitExceeded), out of capacity or quota for now, or AWS failing: the step is retried with backoff. */
export class AwsUnavailableError extends KubedosError {
  static override readonly retryable = true;
  constructor(
    readonly target: string,
    readonly operation: string,
    readonly code: string,
    detail: string,
    hint: string,
    options?: { cause?: unknown },
  ) {
    super(`target ${target}: ${operation} failed for now: ${code}: ${detail}`, hint, options);
  }
}

/** Any other AWS error answer. */
export class AwsApiError extends KubedosError {
  constructor(
    readonly target: string,
    readonly operation: string,
    readonly code: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`target ${target}: ${operation} failed: ${code}: ${detail}`, 'see the AWS error code in the EC2 API reference', options);
  }
}

/** An ImportSnapshot task ended without a snapshot, or stopped making progress; AWS's own status message says why. */
export class AwsImportFailedError extends KubedosError {
  constructor(
    readonly target: string,
    readonly importTaskId: string,
    readonly status: string,
    readonly statusMessage: string,
    hint = 'the status message is AWS VM Import\'s: check the artifact (an ami output), the import bucket and the vmimport service role',
  ) {
    super(`target ${target}: import task ${importTaskId} ${status}: ${statusMessage || '(no status message)'}`, hint);
  }
}

// --- vsphere (src/targets/vsphere) ---

/** The credentials a vsphere target names cannot be read on this worker, or vCenter/ESXi refused them. */
export class VsphereCredentialsError extends KubedosError {
  constructor(
    readonly target: string,
    readonly detail: string,
    hint = "set the variables (or files) the target's credentials name in the vsphere worker's environment, with an account vCenter accepts",
  ) {
    super(`target ${target}: ${detail}`, hint);
  }
}

/** vCenter/ESXi presented a certificate that the target's pinned thumbprint or CA file does not vouch for. */
export class VsphereCertificateError extends KubedosError {
  constructor(
    readonly target: string,
    readonly endpoint: string,
    readonly detail: string,
  ) {
    super(
      `target ${target}: refusing the certificate of ${endpoint}: ${detail}`,
      "if vCenter's certificate was legitimately replaced, read the new thumbprint where you trust the network (vCenter's UI, or `govc about.cert -k -thumbprint` on the management network) and update tls.thumbprint; otherwise do not connect: the connection may be intercepted",
    );
  }
}

/** vCenter/ESXi could not be reached, timed out or is busy: the same step may succeed later. */
export class VsphereUnavailableError extends KubedosError {
  static override readonly retryable = true;
  constructor(
    readonly target: string,
    readonly detail: string,
  ) {
    super(`target ${target}: vSphere is not reachable: ${detail}`, 'check that vCenter/ESXi is up and reachable from the vsphere worker (url, firewall, proxy)');
  }
}

/** An inventory object the spec names (datacenter, cluster, host, pool, datastore, network) does not exist. */
export class VsphereInventoryError extends KubedosError {
  constructor(
    readonly target: string,
    /** The spec field, e.g. `datastore`. */
    readonly field: string,
    readonly value: string | undefined,
    /** What the inventory does hold there. */
    readonly candidates: readonly string[],
  ) {
    const there = candidates.length ? candidates.slice(0, 12).join(', ') + (candidates.length > 12 ? ', …' : '') : 'none';
    super(
      value === undefined ? `target ${target}: ${field} must be set: there is more than one (${there})` : `target ${target}: ${field} ${JSON.stringify(value)} not found in the vSphere inventory`,
      `set targets.${target}.${field} to one of: ${there}`,
    );
  }
}

/** A VM with a name KubeDos uses (a node id, a template) exists, but KubeDos did not make it: never touched. */
export class VsphereNotOwnedError extends KubedosError {
  constructor(
    readonly target: string,
    /** Inventory path of the VM. */
    readonly vm: string,
    readonly what: string,
  ) {
    super(`target ${target}: refusing to use or touch ${vm}: it is not ${what} made by KubeDos`, "KubeDos only uses and destroys VMs whose annotation carries its record; rename or remove the other VM by hand, or point the target's folder elsewhere");
  }
}

// --- baremetal (src/targets/baremetal) ---

/** The worker cannot read a BMC's credentials (the variable is unset, the file unreadable). */
export class BmcCredentialsMissingError extends KubedosError {
  constructor(
    readonly machine: string,
    /** What was looked for: `environment variable BMC_PASSWORD`, `file /etc/…`. */
    readonly source: string,
  ) {
    super(`machine ${machine}: no BMC credentials on this worker: ${source} is not set or not readable`, `set ${source} for the kvm worker (the spec names it; the secret never enters the spec)`);
  }
}

/** A BMC refused the credentials (HTTP 401/403 on the session login or a basic-auth request). */
export class BmcAuthError extends KubedosError {
  constructor(
    readonly machine: string,
    readonly bmc: string,
    readonly user: string,
    readonly status: number,
  ) {
    super(`machine ${machine}: the BMC ${bmc} refused user ${JSON.stringify(user)} (HTTP ${status})`, 'check the user name and the password the target\'s credentials name (the variable or file on the worker), and that the account may use Redfish');
  }
}

/** A BMC's TLS certificate is not the pinned one, or not signed by the given CA for its address. */
export class BmcCertificateError extends KubedosError {
  constructor(
    readonly machine: string,
    readonly bmc: string,
    readonly detail: string,
    /** SHA-256 fingerprint of the certificate it presented. */
    readonly presented?: string,
  ) {
    super(
      `machine ${machine}: refusing the BMC ${bmc}: ${detail}${presented ? ` (it presented a certificate with SHA-256 fingerprint ${presented})` : ''}; nothing was sent to it`,
      'if the BMC\'s certificate was renewed on purpose, pin the new fingerprint (tls.fingerprint) or its CA (tls.ca); otherwise something else answers at that address',
    );
  }
}

/** A BMC could not be reached, or answered with a server error (it may be busy or rebooting). */
export class BmcUnreachableError extends KubedosError {
  static override readonly retryable = true;
  constructor(
    readonly machine: string,
    readonly bmc: string,
    readonly detail: string,
  ) {
    super(`machine ${machine}: BMC ${bmc} is unreachable: ${detail}`, 'check that this worker reaches the BMC network (address, port, firewall) and that the BMC is up');
  }
}

/** A Redfish request was refused (4xx other than authentication) or a task of it failed. */
export class RedfishError extends KubedosError {
  constructor(
    readonly machine: string,
    /** `POST /redfish/v1/Systems/1/Actions/ComputerSystem.Reset` */
    readonly request: string,
    readonly status: number,
    readonly detail: string,
    options?: { retryable?: boolean },
  ) {
    super(
      `machine ${machine}: ${request} → ${status}: ${detail}`,
      status === 404 ? 'check the machine\'s BMC URL and system id in the inventory' : 'the BMC\'s answer says what it refused; some BMCs need a firmware update for Redfish virtual media',
      options,
    );
  }
}

/** Every machine of the inventory belongs to some node (of this or another fleet or target). */
export class InventoryExhaustedError extends KubedosError {
  constructor(
    readonly target: string,
    readonly machines: number,
    /** Who holds them: `r1-u07: rack/web/0003`, … */
    readonly holders: readonly string[],
  ) {
    super(`target ${target}: all ${machines} machine(s) of the inventory are taken (${holders.slice(0, 8).join(', ')}${holders.length > 8 ? ', …' : ''})`, 'add machines to the inventory, or scale down a fleet that holds them (`kubedos status --nodes`)');
  }
}

/** The boot server cannot listen (its port is taken by something else on this worker). */
export class BootServerUnavailableError extends KubedosError {
  static override readonly retryable = true;
  constructor(
    readonly listen: string,
    readonly detail: string,
  ) {
    super(`the bare-metal boot server cannot listen on ${listen}: ${detail}`, 'free that port or change bootServer.url; one worker per host serves a target\'s boot server');
  }
}

/** A machine did something provisioning cannot continue from (powered off while it should run, refused the boot files). */
export class ProvisioningFailedError extends KubedosError {
  constructor(
    readonly machine: string,
    readonly nodeId: string,
    readonly detail: string,
  ) {
    super(`machine ${machine} (node ${nodeId}): ${detail}`, 'look at the machine\'s console through its BMC; the fleet replaces the node');
  }
}

// --- firecracker ---

/** Firecracker's API refused a call (HTTP 4xx/5xx with a `fault_message`): a configuration it cannot run. */
export class FirecrackerApiError extends KubedosError {
  constructor(
    readonly target: string,
    readonly nodeId: string,
    readonly method: string,
    readonly path: string,
    readonly status: number,
    /** Firecracker's own explanation. */
    readonly faultMessage: string,
  ) {
    super(
      `target ${target}: Firecracker refused ${method} ${path} for node ${nodeId} (HTTP ${status}): ${faultMessage}`,
      /cannot be opened|No such file|backing file/i.test(faultMessage)
        ? "a file the microVM is configured with is missing or unreadable in its jail on the host: the host's copy of the image or the node's jail was changed behind KubeDos's back; let the fleet replace the node (prepare uploads a damaged image again)"
        : 'the fault message says what Firecracker objects to; check the target spec (memory, cpus, network) against the host',
      { retryable: status >= 500 },
    );
  }
}

/** Firecracker's API socket did not answer (the VMM is still starting, died, or the SSH stream failed). */
export class FirecrackerApiUnavailableError extends KubedosError {
  static override readonly retryable = true;
  constructor(
    readonly target: string,
    readonly nodeId: string,
    readonly detail: string,
    options?: { cause?: unknown; hint?: string },
  ) {
    super(`target ${target}: Firecracker API of node ${nodeId} unreachable: ${detail}`, options?.hint ?? 'the step is retried; if it persists, look at firecracker.log in the node\'s state directory on the host', { cause: options?.cause });
  }
}

/** The jailer or firecracker exited instead of serving the API (bad paths, uid, a missing binary). */
export class FirecrackerLaunchError extends KubedosError {
  constructor(
    readonly target: string,
    readonly nodeId: string,
    readonly host: string,
    /** The last lines the jailer and firecracker wrote. */
    readonly logTail: string,
  ) {
    super(
      `target ${target}: the jailer did not start firecracker for node ${nodeId} on ${host}${logTail ? `:\n${logTail}` : ' (it wrote nothing)'}`,
      'check the firecracker and jailer paths, uid/gid and chrootBase in the target spec against the host',
    );
  }
}

/** No host of the target has room for another microVM under its limits. */
export class FirecrackerCapacityError extends KubedosError {
  static override readonly retryable = true;
  constructor(
    readonly target: string,
    /** Per host: `label: used/capacity`. */
    readonly hosts: readonly string[],
  ) {
    super(
      `target ${target}: every host is full (${hosts.join(', ')})`,
      'room frees up as a rollout removes old nodes (the step is retried); otherwise add hosts, raise limits (maxMicrovms, cpuOversubscription, memoryOversubscription) or lower replicas',
    );
  }
}

/** The bridge a target's network names does not exist on a host. */
export class FirecrackerBridgeMissingError extends KubedosError {
  constructor(
    readonly target: string,
    readonly host: string,
    readonly bridge: string,
  ) {
    super(`target ${target}: host ${host} has no bridge "${bridge}"`, `create it on the host (ip link add ${bridge} type bridge) or name an existing one in network.bridge`);
  }
}

/** The bundle is incomplete or was built without what the driver needs (the overlay init). */
export class FirecrackerImageError extends KubedosError {}

// --- cloud APIs (shared by the azure and gcp sections) ---

/** Something a cloud provider's API answered with an error; each provider's subclasses say whether to retry. */
export class CloudRequestError extends KubedosError {
  constructor(
    readonly target: string,
    /** What was being done, e.g. `create VM web-0001`. */
    readonly operation: string,
    /** The provider's error code (`AuthorizationFailed`, `rateLimitExceeded`, …) or the HTTP status. */
    readonly code: string,
    /** HTTP status, when there was a response. */
    readonly status: number | undefined,
    detail: string,
    hint: string,
    options?: { cause?: unknown; retryable?: boolean },
  ) {
    super(`target ${target}: ${operation}: ${code}: ${detail}`, hint, options);
  }
}

/** A resource with the name KubeDos derives for a node exists but does not carry KubeDos's marks for it: it is never touched. */
export class CloudResourceNotOwnedError extends KubedosError {
  constructor(
    readonly target: string,
    /** e.g. `virtualMachines/web-0001`, `instances/web-0001`. */
    readonly resource: string,
    readonly nodeId: string,
    /** What KubeDos marks its resources with on this provider: `tags`, `labels`. */
    marks: string,
    hint: string,
  ) {
    super(`target ${target}: ${resource} exists but carries no KubeDos ${marks} for node ${nodeId}; refusing to touch it`, hint);
  }
}

// --- azure ---

/** Something Azure (Resource Manager, Storage, Entra ID) answered with an error; the subclass says whether to retry. */
export class AzureRequestError extends CloudRequestError {}

/** Azure throttled the worker (HTTP 429): retried with backoff. */
export class AzureThrottledError extends AzureRequestError {
  static override readonly retryable = true;
}

/** A quota or capacity limit (cores, public IPs, a size sold out in the region): retried, as quota is freed or raised. */
export class AzureQuotaError extends AzureRequestError {
  static override readonly retryable = true;
}

/** Azure or the way to it failed transiently (5xx, a reset connection, a conflicting operation in progress). */
export class AzureUnavailableError extends AzureRequestError {
  static override readonly retryable = true;
}

/** The worker's identity may not do this, or has no credential at all: fix the role assignment or the sign-in. */
export class AzurePermissionError extends AzureRequestError {}

/** Azure refused the request as invalid (a name, size, subnet or group that does not exist or does not fit). */
export class AzureInvalidRequestError extends AzureRequestError {
  constructor(
    target: string,
    operation: string,
    code: string,
    status: number | undefined,
    detail: string,
    /** The spec field to fix, when it is known. */
    readonly field: string | undefined,
    hint: string,
    options?: { cause?: unknown },
  ) {
    super(target, operation, code, status, detail, hint, options);
  }
}

/** The VM's guest never reported "provisioning complete" to Azure (or reported a failure): an image problem. */
export class AzureProvisioningError extends AzureRequestError {}

/** A resource with the name KubeDos derives for a node exists but is not KubeDos's: it is never touched. */
export class AzureResourceNotOwnedError extends CloudResourceNotOwnedError {
  constructor(target: string, /** e.g. `virtualMachines/web-0001`. */ resource: string, nodeId: string) {
    super(target, resource, nodeId, 'tags', 'KubeDos only changes resources it tagged (kubedos-node); rename or remove that resource, or deploy into another resource group');
  }
}

// --- gcp ---

/** Something Google Cloud (Compute Engine, Cloud Storage, the token service) answered with an error; the subclass says whether to retry. */
export class GcpRequestError extends CloudRequestError {}

/** Google throttled the worker (429, rateLimitExceeded): retried with backoff. */
export class GcpThrottledError extends GcpRequestError {
  static override readonly retryable = true;
}

/** A quota or capacity limit (CPUs, addresses, a zone out of resources): retried, as quota is freed or raised. */
export class GcpQuotaError extends GcpRequestError {
  static override readonly retryable = true;
}

/** Google or the way to it failed transiently (5xx, a reset connection, a resource not ready yet). */
export class GcpUnavailableError extends GcpRequestError {
  static override readonly retryable = true;
}

/** The worker's credentials may not do this, or there are none: fix the IAM role or Application Default Credentials. */
export class GcpPermissionError extends GcpRequestError {}

/** Google refused the request as invalid (a machine type, network, bucket or zone that does not exist or does not fit). */
export class GcpInvalidRequestError extends GcpRequestError {
  constructor(
    target: string,
    operation: string,
    code: string,
    status: number | undefined,
    detail: string,
    /** The spec field to fix, when it is known. */
    readonly field: string | undefined,
    hint: string,
    options?: { cause?: unknown },
  ) {
    super(target, operation, code, status, detail, hint, options);
  }
}

/** A resource with the name KubeDos derives for a node exists but is not KubeDos's: it is never touched. */
export class GcpResourceNotOwnedError extends CloudResourceNotOwnedError {
  constructor(target: string, /** e.g. `instances/web-0001`. */ resource: string, nodeId: string) {
    super(target, resource, nodeId, 'labels', 'KubeDos only changes resources it labelled (kubedos=node); rename or remove that resource, or deploy into another project or zone');
  }
}
