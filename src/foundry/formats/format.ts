/**
 * One interface for every output format. Each format file exports its descriptor, typed
 * `OutputFormat<'its-name'>`; ./registry.ts lists them, one line each, and everything else (the spec's
 * choices, `--format` help, the build pool's tool list, doctor) is derived from that list.
 */
import * as path from 'node:path';
import type { Artifact, BuildContext } from '../context';
import { publishAtomically } from '../files';
import type { BuildPlan, ImagePlan } from '../plan';
import type { EarlyBoot } from './early-boot';

export interface OutputFormat<Name extends string = string> {
  /** The `outputs:` / `--format` name, e.g. `qcow2`. */
  readonly name: Name;
  /** One line, shown in help and in the JSON Schema. */
  readonly description: string;
  /** The build's intermediate product it is made from (documentation and doctor). */
  readonly consumes: string;
  /** Executables the build pool needs for this format, beyond the pipeline's own. */
  readonly tools: readonly string[];
  /**
   * Kernel modules its machines load from the initramfs to reach their root disk: the layer's
   * initramfs carries the union over every format, and a build checks them before `produce`.
   */
  readonly earlyBoot?: EarlyBoot;
  /** The (main) artifact's file name in the output directory. */
  fileName(image: ImagePlan): string;
  /** Make the artifact(s) from the build context, published atomically and digested. */
  produce(ctx: BuildContext): Promise<Artifact[]>;
  /**
   * The parts of the plan this format reads beyond the image's own inputs (plan.ts imageInputs),
   * e.g. the installer ISO it repacks: with the image's inputs, they are all its bytes depend on.
   */
  options?(plan: BuildPlan): unknown;
}

/** Write an artifact through a temporary file, rename it into place, digest it. */
export async function publishArtifact(
  ctx: BuildContext,
  format: string,
  fileName: string,
  write: (tmp: string) => Promise<void>,
): Promise<Artifact> {
  const file = path.join(ctx.options.outputDir, fileName);
  const { sha256, size } = await publishAtomically(file, write);
  return { format, file: fileName, path: file, sha256, size };
}
