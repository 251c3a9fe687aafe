/**
 * Build provenance: an in-toto Statement v1 whose predicate is SLSA Provenance v1.
 *
 * Subjects are every artifact of the build (name + sha256). The build definition names the spec
 * (external parameter, by digest) and the resolved dependencies (the lock by digest, the package
 * archives by URL). Times come from SOURCE_DATE_EPOCH, so the statement is as reproducible as the
 * artifacts it describes.
 */
import { KUBEDOS_URI_BASE, spdxDate } from './sbom';

export const IN_TOTO_STATEMENT_TYPE = 'https://in-toto.io/Statement/v1';
export const SLSA_PROVENANCE_TYPE = 'https://slsa.dev/provenance/v1';
export const KUBEDOS_BUILD_TYPE = `${KUBEDOS_URI_BASE}/build-types/image/v1`;
export const KUBEDOS_BUILDER_ID = `${KUBEDOS_URI_BASE}/foundry`;
export const IN_TOTO_MEDIA_TYPE = 'application/vnd.in-toto+json';

export interface ResourceDescriptor {
  name?: string;
  uri?: string;
  digest?: Record<string, string>;
  mediaType?: string;
  annotations?: Record<string, unknown>;
}

export interface ProvenanceStatement {
  _type: typeof IN_TOTO_STATEMENT_TYPE;
  subject: { name: string; digest: { sha256: string } }[];
  predicateType: typeof SLSA_PROVENANCE_TYPE;
  predicate: {
    buildDefinition: {
      buildType: string;
      externalParameters: Record<string, unknown>;
      internalParameters: Record<string, unknown>;
      resolvedDependencies: ResourceDescriptor[];
    };
    runDetails: {
      builder: { id: string; version?: Record<string, string> };
      metadata: { invocationId: string; startedOn: string; finishedOn: string };
    };
  };
}

export interface ProvenanceInput {
  /** Every artifact of the build. */
  subjects: readonly { name: string; sha256: string }[];
  image: { name: string; role?: string };
  /** sha256 of the platform spec the build was made from. */
  specDigest: string;
  /** sha256 of kubedos.lock. */
  lockDigest: string;
  /** The build's input digest (cache key). */
  inputDigest?: string;
  sourceDateEpoch: number;
  mirror?: string;
  securityMirror?: string;
  /** @default KUBEDOS_BUILDER_ID */
  builderId?: string;
  /** Which run made it (e.g. the workflow id). @default `urn:kubedos:build:<inputDigest or lockDigest>` */
  invocationId?: string;
  /** KubeDos version, recorded as the builder version. */
  version?: string;
}

export function buildProvenance(input: ProvenanceInput): ProvenanceStatement {
  const when = spdxDate(input.sourceDateEpoch);
  const deps: ResourceDescriptor[] = [{ name: 'kubedos.lock', digest: { sha256: input.lockDigest }, mediaType: 'application/json' }];
  if (input.mirror) deps.push({ name: 'debian-mirror', uri: input.mirror });
  if (input.securityMirror) deps.push({ name: 'debian-security-mirror', uri: input.securityMirror });
  return {
    _type: IN_TOTO_STATEMENT_TYPE,
    subject: [...input.subjects]
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map((s) => ({ name: s.name, digest: { sha256: s.sha256 } })),
    predicateType: SLSA_PROVENANCE_TYPE,
    predicate: {
      buildDefinition: {
        buildType: KUBEDOS_BUILD_TYPE,
        externalParameters: {
          spec: { digest: { sha256: input.specDigest } },
          image: { name: input.image.name, ...(input.image.role ? { role: input.image.role } : {}) },
        },
        internalParameters: {
          sourceDateEpoch: input.sourceDateEpoch,
          ...(input.inputDigest ? { inputDigest: input.inputDigest } : {}),
        },
        resolvedDependencies: deps,
      },
      runDetails: {
        builder: { id: input.builderId ?? KUBEDOS_BUILDER_ID, ...(input.version ? { version: { kubedos: input.version } } : {}) },
        metadata: {
          invocationId: input.invocationId ?? `urn:kubedos:build:${input.inputDigest ?? input.lockDigest}`,
          startedOn: when,
          finishedOn: when,
        },
      },
    },
  };
}

export function serializeProvenance(statement: ProvenanceStatement): string {
  return `${JSON.stringify(statement, null, 2)}\n`;
}
