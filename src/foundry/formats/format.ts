/** One interface for every output format; the registry table is in ./index.ts. */
import * as path from 'node:path';
import type { Artifact, BuildContext } from '../context';
import { publishAtomically } from '../files';
import type { FormatName, ImagePlan } from '../plan';

export interface OutputFormat {
  readonly name: FormatName;
  /** One line, shown in CLI help generated from the registry. */
  readonly description: string;
  /** The artifact's file name in the output directory. */
  fileName(image: ImagePlan): string;
  /** Make the artifact(s) from `ctx.rawDisk`, published atomically and digested. */
  produce(ctx: BuildContext): Promise<Artifact[]>;
}

/** Write an artifact through a temporary file, rename it into place, digest it. */
export async function publishArtifact(
  ctx: BuildContext,
  format: FormatName,
  fileName: string,
  write: (tmp: string) => Promise<void>,
): Promise<Artifact> {
  const file = path.join(ctx.options.outputDir, fileName);
  const { sha256, size } = await publishAtomically(file, write);
  return { format, file: fileName, path: file, sha256, size };
}
