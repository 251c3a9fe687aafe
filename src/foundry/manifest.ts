/** The build manifest: what was built from what, and the digest of every artifact. */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { BuildContext } from './context';
import { publishAtomically } from './files';
import { serializeLock } from './lock';

export interface BuildManifest {
  schema: 'kubedos.build-manifest/v1';
  image: { name: string; role: string; hostname: string };
  inputDigest: string;
  layerDigest: string;
  lockDigest: string;
  sourceDateEpoch: number;
  diskSizeBytes: number;
  artifacts: { format: string; file: string; sha256: string; size: number }[];
}

export function manifestFileName(imageName: string): string {
  return `${imageName}.manifest.json`;
}

/** Step (last): write kubedos.lock and the manifest beside the artifacts. No timings: it is deterministic. */
export async function writeManifest(ctx: BuildContext): Promise<BuildManifest> {
  const { image } = ctx.plan;
  const manifest: BuildManifest = {
    schema: 'kubedos.build-manifest/v1',
    image: { name: image.name, role: image.role, hostname: image.hostname },
    inputDigest: ctx.inputDigest!,
    layerDigest: ctx.layer!.digest,
    lockDigest: ctx.lockDigest!,
    sourceDateEpoch: ctx.plan.sourceDateEpoch,
    diskSizeBytes: image.diskSizeBytes,
    artifacts: ctx.artifacts.map(({ format, file, sha256, size }) => ({ format, file, sha256, size })),
  };
  await publishAtomically(path.join(ctx.options.outputDir, 'kubedos.lock'), (tmp) => fs.writeFile(tmp, serializeLock(ctx.lock!)));
  await publishAtomically(path.join(ctx.options.outputDir, manifestFileName(image.name)), (tmp) =>
    fs.writeFile(tmp, `${JSON.stringify(manifest, null, 2)}\n`),
  );
  return manifest;
}
