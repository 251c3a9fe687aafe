/**
 * One descriptor per plug-in: the spec's choices, the JSON Schema, help, pool routing, worker
 * wiring and doctor's requirements all come from the registries. Proved by registering a fake
 * target type and a fake format (one file each, one registry line each) and watching every
 * derived table pick them up, and by checking that no code outside a target's folder names it.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';

const ROOT = path.resolve(__dirname, '..', '..');

/** A registry module with one more line: an ES module namespace, like the real one. */
function registryWith(actual: object, extra: object): object {
  return Object.defineProperty({ ...actual, ...extra }, '__esModule', { value: true });
}
// The one registry line each, added in a test instead of in the file.
jest.mock('../../src/targets/registry', () =>
  registryWith(jest.requireActual('../../src/targets/registry'), { fake: jest.requireActual('../fixtures/fake-plugins/fake-target').fake }),
);
jest.mock('../../src/foundry/formats/registry', () =>
  registryWith(jest.requireActual('../../src/foundry/formats/registry'), { fakeFormat: jest.requireActual('../fixtures/fake-plugins/fake-format').fakeFormat }),
);

import { parseSpec, specJsonSchema, TARGET_TYPES, OUTPUT_FORMATS } from '../../src/platform';
import { SpecError } from '../../src/errors';
import { describeFormats } from '../../src/foundry/formats';
import { POOL_NAMES } from '../../src/pools/pools';
import { poolRequirements } from '../../src/pools/requirements';
import { createDriver, poolOfTarget, supportedTargetTypes, TARGETS } from '../../src/targets';
import { deployActivitiesOf } from '../../workers/run-pool';
import { fakeCreated } from '../fixtures/fake-plugins/fake-target';

const spec = (targets: Record<string, unknown>, outputs = ['raw']) => ({
  apiVersion: 'kubedos.dev/v1alpha1',
  kind: 'Platform',
  metadata: { name: 'p' },
  images: { web: { outputs } },
  targets,
  fleets: Object.fromEntries(Object.keys(targets).map((t) => [`on-${t}`, { image: 'web', target: t, replicas: 2 }])),
});

function problems(doc: object): string[] {
  try {
    parseSpec(stringify(doc), 'kubedos.yaml');
  } catch (err) {
    if (err instanceof SpecError) return err.issues.map((i) => `${i.path}: ${i.message}`);
    throw err;
  }
  return [];
}

describe('a target type registered by one line', () => {
  test('is a choice of the spec, validated by its own schema, in the JSON Schema and help', () => {
    expect(supportedTargetTypes()).toContain('fake');
    expect(TARGET_TYPES.map((t) => t.name)).toContain('fake');
    const parsed = parseSpec(stringify(spec({ lab: { type: 'fake', endpoint: 'api.example' } })), 'kubedos.yaml');
    expect(parsed.targets.lab).toEqual({ type: 'fake', endpoint: 'api.example', zone: 'zone-a' });
    expect(problems(spec({ lab: { type: 'fake', endpoint: 'bad host!' } }))).toEqual([expect.stringMatching(/^targets\.lab\.endpoint: /)]);
    expect(JSON.stringify(specJsonSchema())).toContain('"fake"');
  });

  test('its slots bound the fleets on it, and its accepted formats are checked against the image', () => {
    expect(problems(spec({ lab: { type: 'fake', endpoint: 'a', capacity: 1 } }))).toEqual(['targets.lab.capacity: capacity 1, but the fleets on target "lab" ask for 2 replicas; widen it or lower replicas']);
    expect(problems(spec({ lab: { type: 'fake', endpoint: 'a' } }, ['qcow2']))).toEqual([expect.stringMatching(/^fleets\.on-lab\.image: .*a fake target needs raw.*add raw to images\.web\.outputs/)]);
  });

  test('is routed to its pool, which needs its tools and serves its deploy activities', async () => {
    expect(poolOfTarget('fake' as never)).toBe('cloud');
    expect(poolRequirements('cloud').tools).toContain('fake-cloud-cli');
    expect(poolRequirements('cloud').plugins).toContainEqual({ kind: 'target', name: 'fake', tools: ['fake-cloud-cli'], files: [] });
    expect(Object.keys(deployActivitiesOf('cloud'))).toEqual(expect.arrayContaining(['prepareImage', 'createNode', 'destroyNode', 'listNodes']));
    const driver = await createDriver('lab', { type: 'fake', endpoint: 'a', zone: 'z' } as never, { stateDir: '/nonexistent' });
    expect(driver.type).toBe('fake');
    expect(fakeCreated).toEqual([{ name: 'lab', spec: { type: 'fake', endpoint: 'a', zone: 'z' } }]);
  });
});

test('a type this build has no driver for is refused by validate, naming the types it has', () => {
  const found = problems(spec({ dc: { type: 'vsphere-nope', url: 'https://vc/sdk' } }));
  expect(found).toEqual([`targets.dc.type: target type "vsphere-nope" has no driver in this build; this build deploys to ${TARGETS.map((t) => t.type).join(', ')}`]);
});

test('an output format registered by one line is a choice of the spec, in --format help and the build pool\'s tools', () => {
  expect(OUTPUT_FORMATS.map((f) => f.name)).toContain('fake-disk');
  expect(parseSpec(stringify(spec({}, ['fake-disk'])), 'kubedos.yaml').images.web.outputs).toEqual(['fake-disk']);
  expect(describeFormats()).toMatch(/^fake-disk\s+A disk format that exists only in tests$/m);
  expect(poolRequirements('build').tools).toContain('fake-convert');
});

/** Quoted string literals on code lines (comments skipped). */
function literals(file: string): string[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => !/^\s*(\*|\/\/|\/\*)/.test(line))
    .flatMap((line) => [...line.matchAll(/'([a-z0-9-]+)'/g)].map((m) => m[1]!));
}

function tsFiles(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir)).flatMap((name) => {
    const rel = path.join(dir, name);
    if (statSync(path.join(ROOT, rel)).isDirectory()) return tsFiles(rel);
    return rel.endsWith('.ts') ? [rel] : [];
  });
}

test('no code outside a target type\'s own folder names it: a new one touches its folder and the registry', () => {
  const types: string[] = TARGETS.map((t) => t.type).filter((t: string) => t !== 'fake');
  // A pool may share its name with a target type it runs: in src/pools and workers/ that name is the pool's.
  const namesPool = (file: string, lit: string) => (file.startsWith('src/pools/') || file.startsWith('workers/')) && (POOL_NAMES as readonly string[]).includes(lit);
  // An output format may share its name with the target type that deploys it (firecracker, azure), and so may
  // the image's first-boot reader for that platform (src/foundry/azure-reader.ts): their own files name it.
  const ownFile = (file: string, lit: string) =>
    file.startsWith(`src/targets/${lit}/`) || file === `src/foundry/formats/${lit}.ts` || file === `src/foundry/${lit}-reader.ts`;
  const outside = ['src', 'activities', 'workers', 'workflows'].flatMap(tsFiles).flatMap((file) =>
    literals(path.join(ROOT, file))
      .filter((lit) => types.includes(lit) && !ownFile(file, lit) && !namesPool(file, lit))
      .map((lit) => `${file} names '${lit}'`),
  );
  expect(outside).toEqual([]);
});
