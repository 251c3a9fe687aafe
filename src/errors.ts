/**
 * Typed errors of the domain core, in one place. A failure's `name` is its class name: at the
 * activity boundary it becomes the ApplicationFailure type that retry policies and workflows match.
 */

/** Base class: every KubeDos error carries a short hint telling the user what to do about it. */
export class KubedosError extends Error {
  constructor(
    message: string,
    /** What the user can do about it; printed after the message by the CLI. */
    readonly hint?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
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
export class TemporalUnavailableError extends KubedosError {}

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

/** The artifact store refused or could not serve a request. */
export class StoreError extends KubedosError {}

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
