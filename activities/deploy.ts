/**
 * Deploy activities: thin adapters from the node workflow to a target driver. Each heartbeats,
 * passes the cancellation signal down, and is idempotent by node id, so a retry after a worker
 * crash finds what the first attempt made instead of making it twice. Private host keys are
 * generated here and handed straight to the driver: only the public identity is returned, so
 * no secret enters workflow history.
 */
import { createHash } from 'node:crypto';
import { Context } from '@temporalio/activity';
import { NodeUnhealthyError, waitHealthy, type SshProbe } from '../src/health/check';
import type { HealthCheck, TargetSpec } from '../src/platform/types';
import type { DriverContext, ImageSource, NodeLabels, OwnedNode, PreparedImage, ProgressDetail, TargetDriver } from '../src/targets/driver';
import { generateIdentity, type PublicIdentity } from '../src/targets/identity';
import { ConfigError } from '../src/errors';
import { createDriver, isTargetType, poolOfTarget, targetDescriptor } from '../src/targets';
import { fetchVerifiedArtifact } from '../src/store/fetch';
import type { ArtifactStore } from '../src/store/store';

export { NodeUnhealthyError };

/** How often a health check heartbeats while a probe is in flight. */
const PROBE_HEARTBEAT_MS = 5_000;

/** A target as workflows carry it: its name and its (validated) spec. */
export interface TargetRef {
  name: string;
  spec: TargetSpec;
}

/** The image a fleet runs: name and digest (signed publication, or plan digest on hollow). */
export interface ImageRef {
  name: string;
  digest: string;
}

export interface DeployDeps {
  /** Driver per target; default: createDriver with state under $KUBEDOS_HOME/targets. */
  driverFor?: (target: TargetRef) => TargetDriver | Promise<TargetDriver>;
  /**
   * Target types this worker runs (its pool's); a step for another type is refused rather than
   * run on a host that was never meant to reach that substrate. @default every type
   */
  serves?: readonly string[];
  /**
   * Fetch the image's artifact in `format` to this host, verified against its signed manifest.
   * Required for drivers that consume bytes; refusing is the verification's job, not the driver's.
   */
  fetchArtifact?: (image: ImageRef, format: string, signal: AbortSignal, progress: DriverContext['progress']) => Promise<NonNullable<ImageSource['artifact']>>;
  /** SSH runner for `ssh` health checks (the SSH layer). */
  ssh?: SshProbe;
}

export interface CreateNodeInput {
  target: TargetRef;
  nodeId: string;
  hostname: string;
  labels: NodeLabels;
  image: PreparedImage;
  authorizedKeys: string[];
}

export interface NodeTargetInput {
  target: TargetRef;
  nodeId: string;
}

export interface AwaitHealthyInput extends NodeTargetInput {
  healthCheck: HealthCheck;
  identity?: PublicIdentity;
}

/** One driver per target (name and settings), made on first use and shared by every activity. */
function driverCache(create: (t: TargetRef) => TargetDriver | Promise<TargetDriver>, serves?: readonly string[]): (t: TargetRef) => Promise<TargetDriver> {
  const drivers = new Map<string, Promise<TargetDriver>>();
  return (target) => {
    if (serves && !serves.includes(target.spec.type)) {
      return Promise.reject(
        new ConfigError(
          `target ${target.name} (${target.spec.type}) is not run by this worker, which serves ${serves.join(', ') || 'no target types'}`,
          `a ${target.spec.type} step belongs on the ${poolOfTarget(target.spec.type)} pool's queue; check the fleet's deployQueue`,
        ),
      );
    }
    const key = createHash('sha256').update(JSON.stringify([target.name, target.spec])).digest('hex');
    let driver = drivers.get(key);
    if (!driver) {
      driver = Promise.resolve().then(() => create(target));
      // A failed creation (bad settings, a module that did not load) is not cached.
      driver.catch(() => drivers.delete(key));
      drivers.set(key, driver);
    }
    return driver;
  };
}

/** What a previous attempt heartbeated, when it looks like a driver's progress report. */
function previousProgress(details: unknown): ProgressDetail | undefined {
  const d = details as Partial<ProgressDetail> | null | undefined;
  return d && typeof d === 'object' && typeof d.step === 'string' ? (d as ProgressDetail) : undefined;
}

/** The activity's cancellation, a heartbeat-backed progress callback and the previous attempt's last heartbeat, for the driver. */
function driverContext(): DriverContext {
  const ctx = Context.current();
  return {
    signal: ctx.cancellationSignal,
    progress: (detail) => ctx.heartbeat(detail),
    previous: previousProgress(ctx.info.heartbeatDetails),
  };
}

/**
 * fetchArtifact for DeployDeps from an artifact store: the publication's signature is checked
 * with the trusted Foundry keys, then the artifact is downloaded into `destDir` and its digest
 * checked before anything uses it (a verified copy already there is reused). A format of several
 * files (a bundle) is fetched whole, each file verified alike, and handed over as `files`.
 */
export function artifactsFromStore(store: ArtifactStore, destDir: string, allowedSigners?: string): NonNullable<DeployDeps['fetchArtifact']> {
  return async (image, format, signal, progress) => {
    const fetch = (file?: string) =>
      fetchVerifiedArtifact({
        store,
        manifestDigest: image.digest,
        format,
        file,
        destDir,
        allowedSigners,
        signal,
        onProgress: (p) => progress?.({ step: `fetching ${image.name} ${file ?? format}`, done: p.bytes, total: p.total }),
      });
    const first = await fetch();
    // A bundle (several files of one format, e.g. pxe): every file, each verified the same way.
    const names = first.manifest.artifacts.filter((a) => a.format === format).map((a) => a.file);
    const files = [{ file: names[0]!, sha256: first.sha256, size: first.size, path: first.path }];
    for (const name of names.slice(1)) {
      const more = await fetch(name);
      files.push({ file: name, sha256: more.sha256, size: more.size, path: more.path });
    }
    return { format, sha256: first.sha256, size: first.size, path: first.path, files };
  };
}

export function createDeployActivities(deps: DeployDeps = {}) {
  const driverFor = driverCache(deps.driverFor ?? ((t) => createDriver(t.name, t.spec)), deps.serves);

  return {
    /**
     * Make the image present on the target (once per digest), verified before anything uses it.
     * `format` is the artifact the target deploys; absent (fleets started before fleets carried
     * it), the first format its type accepts.
     */
    async prepareImage(input: { target: TargetRef; image: ImageRef; format?: string }): Promise<PreparedImage> {
      const driver = await driverFor(input.target);
      const ctx = driverContext();
      const source: ImageSource = { name: input.image.name, digest: input.image.digest };
      const accepts = isTargetType(input.target.spec.type) ? targetDescriptor(input.target.spec.type).accepts : 'any';
      const format = input.format ?? (accepts === 'any' ? undefined : accepts[0]);
      if (format) {
        if (!deps.fetchArtifact) {
          throw new ConfigError(
            `target ${input.target.name} needs the image's ${format} artifact, but this worker has no artifact store`,
            'start the worker with the artifact store configured (KUBEDOS_S3_* for a shared store)',
          );
        }
        // Heartbeats while fetching keep what an earlier attempt left to resume from.
        const resume = ctx.previous?.resume;
        const progress: DriverContext['progress'] = resume ? (detail) => ctx.progress?.({ ...detail, resume }) : ctx.progress;
        source.artifact = await deps.fetchArtifact(input.image, format, ctx.signal!, progress);
      }
      return driver.prepare(source, ctx);
    },

    /** Create the node with a fresh identity; a retry returns the identity the node already has. */
    async createNode(input: CreateNodeInput): Promise<PublicIdentity> {
      const driver = await driverFor(input.target);
      const identity = generateIdentity(input.hostname);
      return driver.create({ nodeId: input.nodeId, labels: input.labels, image: input.image, identity, authorizedKeys: input.authorizedKeys }, driverContext());
    },

    async startNode(input: NodeTargetInput): Promise<void> {
      await (await driverFor(input.target)).start(input.nodeId, driverContext());
    },

    /** Probe the guest until it passes the fleet's check; heartbeats every probe. */
    async awaitNodeHealthy(input: AwaitHealthyInput): Promise<{ detail: string; probes: number }> {
      const driver = await driverFor(input.target);
      const ctx = Context.current();
      let probes = 0;
      let beat: { attempt: number; detail: string } = { attempt: 0, detail: 'not probed yet' };
      // A probe may wait on a slow BMC or cloud API longer than the heartbeat timeout: the timer
      // says the worker is alive meanwhile, so only a dead worker times the check out (a retry
      // would start its deadline again, and the stale attempt would hold its slot).
      const timer = setInterval(() => ctx.heartbeat(beat), PROBE_HEARTBEAT_MS);
      try {
        const result = await waitHealthy(
          input.healthCheck,
          { driver, nodeId: input.nodeId, identity: input.identity, ssh: deps.ssh, ctx: driverContext() },
          (r, attempt) => {
            probes = attempt;
            beat = { attempt, detail: r.detail };
            ctx.heartbeat(beat);
          },
        );
        return { detail: result.detail, probes };
      } finally {
        clearInterval(timer);
      }
    },

    async destroyNode(input: NodeTargetInput): Promise<void> {
      await (await driverFor(input.target)).destroy(input.nodeId, driverContext());
    },

    /** Nodes KubeDos owns on the target (for orphan sweeps and `kubedos status --nodes`). */
    async listNodes(input: { target: TargetRef; platform?: string; fleet?: string }): Promise<OwnedNode[]> {
      return (await driverFor(input.target)).list({ platform: input.platform, fleet: input.fleet }, driverContext());
    },
  };
}

export type DeployActivities = ReturnType<typeof createDeployActivities>;
