import { linkOrCopySparse } from '../files';
import { publishArtifact, type OutputFormat } from './format';

/** The GPT disk itself, sparse. */
export const raw: OutputFormat = {
  name: 'raw',
  description: 'raw GPT disk image (sparse file); UEFI boot',
  fileName: (image) => `${image.name}.raw`,
  produce: async (ctx) => [await publishArtifact(ctx, 'raw', raw.fileName(ctx.plan.image), (tmp) => linkOrCopySparse(ctx.rawDisk!, tmp))],
};
