/**
 * The exported JSON Schema. No validator library is installed, so the examples are checked by a
 * small walker covering what the schema uses for structure (type, required, properties,
 * additionalProperties, enum, const, pattern, oneOf/anyOf, items).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { OUTPUT_FORMATS, SPEC_SCHEMA_ID, specJsonSchema, TARGET_TYPES } from '../../src/platform';

type Schema = Record<string, any>;

const ROOT = path.resolve(__dirname, '..', '..');
const example = (name: string): unknown => parseYaml(readFileSync(path.join(ROOT, 'examples', name, 'kubedos.yaml'), 'utf8'));

function* nodes(schema: unknown, at = '#'): Generator<[string, Schema]> {
  if (Array.isArray(schema)) {
    for (const [i, item] of schema.entries()) yield* nodes(item, `${at}/${i}`);
    return;
  }
  if (typeof schema !== 'object' || schema === null) return;
  yield [at, schema as Schema];
  for (const [key, value] of Object.entries(schema)) if (key !== 'default' && key !== 'enum' && key !== 'const') yield* nodes(value, `${at}/${key}`);
}

function typeOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (Number.isInteger(value)) return 'integer';
  return typeof value;
}

/** Problems of `value` against `schema`: enough of JSON Schema to catch drift between schema and examples. */
function problems(schema: Schema, value: unknown, at: string): string[] {
  const alternatives = (schema.oneOf ?? schema.anyOf) as Schema[] | undefined;
  if (alternatives) {
    const results = alternatives.map((alt) => problems(alt, value, at));
    const ok = results.filter((r) => r.length === 0).length;
    if (schema.oneOf ? ok === 1 : ok >= 1) return [];
    return results.sort((a, b) => a.length - b.length)[0] ?? [`${at}: no alternative matches`];
  }
  const found = typeOf(value);
  if (schema.type && schema.type !== found && !(schema.type === 'number' && found === 'integer')) return [`${at}: expected ${schema.type}, got ${found}`];
  if ('const' in schema && schema.const !== value) return [`${at}: expected ${String(schema.const)}`];
  if (schema.enum && !schema.enum.includes(value)) return [`${at}: ${String(value)} not in enum`];
  if (schema.pattern && typeof value === 'string' && !new RegExp(schema.pattern).test(value)) return [`${at}: ${value} does not match ${schema.pattern}`];
  if (Array.isArray(value)) {
    if (schema.prefixItems) return value.flatMap((item, i) => problems(schema.prefixItems[i] ?? {}, item, `${at}[${i}]`));
    return value.flatMap((item, i) => problems(schema.items ?? {}, item, `${at}[${i}]`));
  }
  if (found !== 'object') return [];
  const object = value as Record<string, unknown>;
  const missing = ((schema.required ?? []) as string[]).filter((k) => !(k in object)).map((k) => `${at}.${k}: required`);
  const members = Object.entries(object).flatMap(([key, member]) => {
    const declared = schema.properties?.[key] as Schema | undefined;
    if (declared) return problems(declared, member, `${at}.${key}`);
    if (schema.additionalProperties === false) return [`${at}.${key}: not allowed`];
    if (schema.propertyNames?.pattern && !new RegExp(schema.propertyNames.pattern).test(key)) return [`${at}.${key}: bad key`];
    return typeof schema.additionalProperties === 'object' ? problems(schema.additionalProperties, member, `${at}.${key}`) : [];
  });
  return [...missing, ...members];
}

describe('specJsonSchema', () => {
  const schema = specJsonSchema();

  test('is draft 2020-12 with an $id and a title', () => {
    expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(schema.$id).toBe(SPEC_SCHEMA_ID);
    expect(schema.title).toBe('KubeDos platform spec');
  });

  test('survives a JSON round trip unchanged', () => {
    expect(JSON.parse(JSON.stringify(schema))).toEqual(schema);
  });

  test('requires the top-level keys a spec cannot do without', () => {
    expect(schema.required).toEqual(['apiVersion', 'kind', 'metadata', 'images']);
    expect(Object.keys(schema.properties as object)).toEqual(['apiVersion', 'kind', 'metadata', 'base', 'images', 'targets', 'fleets', 'schedules']);
  });

  test('lists every output format and every target type', () => {
    const enums = [...nodes(schema)].map(([, n]) => n.enum as unknown[] | undefined).filter(Boolean);
    expect(enums).toContainEqual(OUTPUT_FORMATS.map((f) => f.name));
    const targetTypes = [...nodes(schema)].filter(([at]) => at.endsWith('/properties/type')).map(([, n]) => n.const as string);
    for (const t of TARGET_TYPES) expect(targetTypes).toContain(t.name);
  });

  test('every object with declared properties forbids unknown ones', () => {
    const open = [...nodes(schema)].filter(([, n]) => n.type === 'object' && n.properties && n.additionalProperties !== false).map(([at]) => at);
    expect(open).toEqual([]);
  });

  test('durations and sizes are strings on input, with descriptions', () => {
    const imageProps = (schema.properties as Schema).images.additionalProperties.properties as Schema;
    expect(imageProps.disk.properties.size).toMatchObject({ type: 'string', default: '2GiB' });
    expect(imageProps.outputs.description).toMatch(/^Artifact formats to build/);
    expect(imageProps.passwordLogin).toMatchObject({ type: 'boolean', default: false });
  });

  test.each(['quickstart', 'roles', 'vsphere', 'firecracker'])('the %s example conforms', (name) => {
    expect(problems(schema, example(name), 'spec')).toEqual([]);
  });

  test('the walker does catch a misspelt key (it is not vacuous)', () => {
    const broken = example('quickstart') as Record<string, any>;
    broken.images.worker.pakages = [];
    expect(problems(schema, broken, 'spec')).toEqual(['spec.images.worker.pakages: not allowed']);
  });
});
