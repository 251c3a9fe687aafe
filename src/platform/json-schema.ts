/** The spec's JSON Schema, for editors (yaml-language-server) and `kubedos schema`. */
import { z } from 'zod';
import { API_VERSION } from './catalog';
import { specSchema } from './schema';

/** Where the schema is published; also its `$id`. */
export const SPEC_SCHEMA_ID = `https://kubedos.dev/schemas/${API_VERSION.split('/')[1]}/platform.json`;

/**
 * JSON Schema (draft 2020-12) of the spec as written: durations and sizes are strings, defaulted
 * fields are optional and show their default. Rules that need code (cross-references, host-key
 * pinning, duplicate names) are not expressible in it and are only checked by `parseSpec`.
 */
export function specJsonSchema(): Record<string, unknown> {
  const generated = z.toJSONSchema(specSchema, { io: 'input', target: 'draft-2020-12', unrepresentable: 'throw' }) as Record<string, unknown>;
  const { $schema, ...rest } = generated;
  return { $schema, $id: SPEC_SCHEMA_ID, title: 'KubeDos platform spec', ...rest };
}
