/**
 * The cluster bootstrap's decisions, without a server: what it registers, what it refuses, the
 * exact commands it prints, the "namespace not found" window it waits out, and that a ready
 * verdict is cached (no round trip next time). The real server is test/e2e/cluster.test.ts.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ClusterNotReadyError } from '../../src/errors';
import type { ClusterServices } from '../../src/temporal/cluster-bootstrap';
import { devServerArgv } from '../../src/temporal/dev-server';
import { SEARCH_ATTRIBUTES } from '../../src/temporal/search-attributes';

const KEYWORD = 2;
const TEXT = 1;
const ADDRESS = 'temporal.example.com:7233';

const grpcError = (code: number, message: string) => Object.assign(new Error(message), { code });

/** A stand-in of the two services with a namespace table, counting every call. */
function fakeCluster(init: { namespaces?: Record<string, Record<string, number>>; notFoundAfterCreate?: number; refuseAdd?: boolean; refuseRegister?: boolean } = {}) {
  const namespaces = new Map(Object.entries(init.namespaces ?? {}).map(([k, v]) => [k, { ...v }]));
  let notFound = 0;
  const calls: string[] = [];
  const services = {
    workflowService: {
      async describeNamespace({ namespace }: { namespace: string }) {
        calls.push(`describeNamespace ${namespace}`);
        if (!namespaces.has(namespace)) throw grpcError(5, `Namespace ${namespace} is not found.`);
        return { namespaceInfo: { name: namespace } };
      },
      async registerNamespace({ namespace, workflowExecutionRetentionPeriod }: { namespace: string; workflowExecutionRetentionPeriod: { seconds: { toNumber(): number } | number } }) {
        calls.push(`registerNamespace ${namespace} ${Number(workflowExecutionRetentionPeriod.seconds)}`);
        if (init.refuseRegister) throw grpcError(7, 'Request unauthorized.');
        if (namespaces.has(namespace)) throw grpcError(6, 'Namespace already exists.');
        namespaces.set(namespace, {});
        notFound = init.notFoundAfterCreate ?? 0;
        return {};
      },
    },
    operatorService: {
      async listSearchAttributes({ namespace }: { namespace: string }) {
        calls.push(`listSearchAttributes ${namespace}`);
        return { customAttributes: { ...namespaces.get(namespace) }, systemAttributes: { WorkflowId: KEYWORD } };
      },
      async addSearchAttributes({ namespace, searchAttributes }: { namespace: string; searchAttributes: Record<string, number> }) {
        calls.push(`addSearchAttributes ${namespace} ${Object.keys(searchAttributes).join(',')}`);
        if (notFound > 0) {
          notFound--;
          throw grpcError(5, `Namespace ${namespace} is not found.`);
        }
        if (init.refuseAdd) throw grpcError(7, 'Request unauthorized.');
        Object.assign(namespaces.get(namespace)!, searchAttributes);
        return {};
      },
    },
  };
  return { services: services as unknown as ClusterServices, calls, namespaces };
}

const allKeyword = () => Object.fromEntries(Object.keys(SEARCH_ATTRIBUTES).map((n) => [n, KEYWORD]));
const names = Object.keys(SEARCH_ATTRIBUTES);

let home: string;
beforeEach(() => {
  home = mkdtempSync(path.join(os.tmpdir(), 'kubedos-bootstrap-'));
  process.env.KUBEDOS_HOME = home;
});
afterEach(() => {
  delete process.env.KUBEDOS_HOME;
  rmSync(home, { recursive: true, force: true });
});

/** A fresh copy of the module: what a new process sees (the per-process memo is empty). */
function freshModule(): typeof import('../../src/temporal/cluster-bootstrap') {
  let mod: typeof import('../../src/temporal/cluster-bootstrap') | undefined;
  jest.isolateModules(() => {
    mod = require('../../src/temporal/cluster-bootstrap');
  });
  return mod!;
}

test('the attributes KubeDos needs are all Keyword (the commands group them by type)', () => {
  expect(Object.values(SEARCH_ATTRIBUTES).every((t) => t === 'Keyword')).toBe(true);
  expect(names).toEqual(['KubedosFleet', 'KubedosImage', 'KubedosTarget', 'KubedosPhase']);
});

test('a ready namespace changes nothing; missing attributes are registered in one call', async () => {
  const { bootstrapCluster } = freshModule();
  const ready = fakeCluster({ namespaces: { default: allKeyword() } });
  const state = await bootstrapCluster(ready.services, { address: ADDRESS, namespace: 'default' });
  expect(state.attributes.every((a) => a.registered === 'Keyword' && !a.created)).toBe(true);
  expect(ready.calls).toEqual(['describeNamespace default', 'listSearchAttributes default']);

  const bare = fakeCluster({ namespaces: { default: { KubedosFleet: KEYWORD } } });
  const fixed = await bootstrapCluster(bare.services, { address: ADDRESS, namespace: 'default' });
  expect(bare.calls).toContain('addSearchAttributes default KubedosImage,KubedosTarget,KubedosPhase');
  expect(fixed.attributes.filter((a) => a.created).map((a) => a.name)).toEqual(['KubedosImage', 'KubedosTarget', 'KubedosPhase']);
  expect(bare.namespaces.get('default')).toEqual(allKeyword());
});

test('a missing namespace is never created on connect: the error names cluster init and the exact commands', async () => {
  const { bootstrapCluster } = freshModule();
  const { services, calls } = fakeCluster();
  const err = await bootstrapCluster(services, { address: ADDRESS, namespace: 'fleets' }).catch((e) => e);
  expect(err.name).toBe(ClusterNotReadyError.name); // a fresh module copy: its own class
  expect(err.retryable).toBe(false);
  expect(err.message).toBe(`the Temporal cluster at ${ADDRESS} is not ready for KubeDos: namespace fleets does not exist`);
  expect(err.hint).toContain('`kubedos cluster init` creates the namespace and registers the search attributes');
  expect(err.commands).toEqual([
    `temporal operator namespace create --address ${ADDRESS} --namespace fleets --retention 720h`,
    `temporal operator search-attribute create --address ${ADDRESS} --namespace fleets --name KubedosFleet --name KubedosImage --name KubedosTarget --name KubedosPhase --type Keyword`,
  ]);
  expect(calls.some((c) => c.startsWith('registerNamespace'))).toBe(false);
});

test('cluster init creates the namespace and waits out its "not found" window before registering', async () => {
  const { bootstrapCluster } = freshModule();
  const { services, calls, namespaces } = fakeCluster({ notFoundAfterCreate: 3 });
  const state = await bootstrapCluster(services, { address: ADDRESS, namespace: 'fleets' }, { createNamespace: true, retentionDays: 7 });
  expect(state.namespaceCreated).toBe(true);
  expect(calls.filter((c) => c.startsWith('registerNamespace'))).toEqual([`registerNamespace fleets ${7 * 86400}`]);
  expect(calls.filter((c) => c.startsWith('addSearchAttributes'))).toHaveLength(4); // 3 × not found, then done
  expect(namespaces.get('fleets')).toEqual(allKeyword());
});

test('an attribute with another type is never changed behind the user\'s back', async () => {
  const { bootstrapCluster } = freshModule();
  const { services, calls } = fakeCluster({ namespaces: { default: { ...allKeyword(), KubedosPhase: TEXT } } });
  const err = await bootstrapCluster(services, { address: ADDRESS, namespace: 'default' }, { createNamespace: true }).catch((e) => e);
  expect(err.name).toBe(ClusterNotReadyError.name); // a fresh module copy: its own class
  expect(err.wrongType).toEqual(['KubedosPhase is Text, needs Keyword']);
  expect(err.commands).toEqual([
    `temporal operator search-attribute remove --address ${ADDRESS} --namespace default --name KubedosPhase --yes`,
    `temporal operator search-attribute create --address ${ADDRESS} --namespace default --name KubedosPhase --type Keyword`,
  ]);
  expect(calls.some((c) => c.startsWith('addSearchAttributes'))).toBe(false);
});

test('a server that refuses the operator call: the error carries the refusal and the commands', async () => {
  const { bootstrapCluster } = freshModule();
  const { services } = fakeCluster({ namespaces: { default: {} }, refuseAdd: true });
  const err = await bootstrapCluster(services, { address: ADDRESS, namespace: 'default' }).catch((e) => e);
  expect(err.name).toBe(ClusterNotReadyError.name); // a fresh module copy: its own class
  expect(err.message).toContain('search attributes missing: KubedosFleet (Keyword), KubedosImage (Keyword), KubedosTarget (Keyword), KubedosPhase (Keyword)');
  expect(err.message).toContain('the server refused to register search attributes: Request unauthorized.');
  expect(err.hint).toMatch(/^run\n    temporal operator search-attribute create --address/);
});

test('Temporal Cloud: no namespace creation; the tcld and UI steps instead', async () => {
  const { bootstrapCluster } = freshModule();
  const address = 'fleets.a1b2c.tmprl.cloud:7233';
  const { services, calls } = fakeCluster({ refuseRegister: true });
  const err = await bootstrapCluster(services, { address, namespace: 'fleets.a1b2c' }, { createNamespace: true }).catch((e) => e);
  expect(err.name).toBe(ClusterNotReadyError.name); // a fresh module copy: its own class
  expect(calls.some((c) => c.startsWith('registerNamespace'))).toBe(false);
  expect(err.hint).toMatch(/^on Temporal Cloud:/);
  expect(err.commands[0]).toMatch(/^tcld namespace create --namespace fleets\.a1b2c --region <region> --retention-days 30 .*Cloud UI/);
  expect(err.commands[1]).toBe(
    'tcld namespace search-attributes add --namespace fleets.a1b2c --search-attribute KubedosFleet=Keyword --search-attribute KubedosImage=Keyword --search-attribute KubedosTarget=Keyword --search-attribute KubedosPhase=Keyword   (or Cloud UI → Namespaces → fleets.a1b2c → Custom Search Attributes)',
  );
});

test('on connect: checked once, then cached in the state dir — a later process makes no round trip', async () => {
  const settings = { address: ADDRESS, namespace: 'default', embedded: false };
  const first = fakeCluster({ namespaces: { default: {} } });
  const mod = freshModule();
  await mod.ensureClusterReady(first.services, settings);
  await mod.ensureClusterReady(first.services, settings);
  expect(first.calls.filter((c) => c.startsWith('describeNamespace'))).toHaveLength(1);
  const verdict = JSON.parse(readFileSync(mod.verdictFile(settings, home), 'utf8'));
  expect(verdict).toMatchObject({ address: ADDRESS, namespace: 'default', attributes: SEARCH_ATTRIBUTES });

  const later = fakeCluster({ namespaces: { default: allKeyword() } });
  await freshModule().ensureClusterReady(later.services, settings);
  expect(later.calls).toEqual([]);
  // Another namespace of the same cluster is its own verdict.
  await expect(freshModule().ensureClusterReady(later.services, { ...settings, namespace: 'other' })).rejects.toMatchObject({ name: ClusterNotReadyError.name, namespaceMissing: true });
  // The embedded dev server is started with the attributes: never checked.
  await freshModule().ensureClusterReady(later.services, { ...settings, embedded: true });
  expect(later.calls).toEqual(['describeNamespace other']);
});

test('the production dynamic config carries every value the dev server is given for KubeDos', () => {
  const file = parseYaml(readFileSync(path.resolve(__dirname, '../../deploy/temporal/dynamicconfig/kubedos.yaml'), 'utf8')) as Record<string, { value: unknown; constraints: object }[]>;
  const argv = devServerArgv('temporal', { ip: '127.0.0.1', port: 1, uiPort: 2, dbFile: 'x.db', namespace: 'default' });
  const flags = argv.flatMap((a, i) => (a === '--dynamic-config-value' ? [argv[i + 1]!] : []));
  expect(flags.length).toBeGreaterThan(0);
  for (const flag of flags) {
    const [key, raw] = flag.split('=') as [string, string];
    expect(file[key]).toEqual([{ value: JSON.parse(raw), constraints: {} }]);
  }
});
