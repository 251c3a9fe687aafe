/** The CLI as a user runs it: exit codes, --json, every spec problem named, help, schema. */
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ENV_VARS } from '../../src/config/env';
import { ROOT, cliEnv, kubedos } from '../support/cli';

const env = cliEnv({ KUBEDOS_HOME: mkdtempSync(path.join(os.tmpdir(), 'kubedos-cli-')) });
const fixture = (name: string) => path.join(ROOT, 'test', 'fixtures', 'specs', name);

test('validate accepts the quickstart and prints a summary (JSON with --json)', async () => {
  const r = await kubedos(['validate', path.join(ROOT, 'examples', 'quickstart', 'kubedos.yaml'), '--json'], env);
  expect(r.code).toBe(0);
  const out = JSON.parse(r.stdout);
  expect(out).toMatchObject({ valid: true, images: ['worker'], fleets: ['workers'] });
  expect(out.digest).toMatch(/^[0-9a-f]{64}$/);
});

test('validate names all five mistakes with file:line:col and exits 3', async () => {
  const r = await kubedos(['validate', fixture('five-mistakes.yaml')], env);
  expect(r.code).toBe(3);
  expect(r.stdout).toBe('');
  const lines = r.stderr.split('\n').filter((l) => /five-mistakes\.yaml:\d+:\d+ /.test(l));
  expect(lines).toHaveLength(5);
  expect(r.stderr).toMatch(/images\.worker: unknown key "pakages"; did you mean "packages"\?/);
  expect(r.stderr).toMatch(/images\.worker\.outputs\[2\]: unknown format "qcow3"; expected one of raw, qcow2/);
  expect(r.stderr).toMatch(/targets\.pve\.ssh: a host key must be pinned/);
  expect(r.stderr).toMatch(/fleets\.workers\.healthCheck\.timeout: invalid duration "5 minutes"/);
  expect(r.stderr).toMatch(/fleets\.web\.image: no image named "wrker" \(did you mean "worker"\?\)/);
});

test('with --json the problems are an {error} object on stdout', async () => {
  const r = await kubedos(['validate', fixture('five-mistakes.yaml'), '--json'], env);
  expect(r.code).toBe(3);
  const { error } = JSON.parse(r.stdout);
  expect(error.name).toBe('SpecError');
  expect(error.issues.map((i: { path: string }) => i.path).sort()).toEqual([
    'fleets.web.image',
    'fleets.workers.healthCheck.timeout',
    'images.worker',
    'images.worker.outputs[2]',
    'targets.pve.ssh',
  ]);
});

test('a spec path that does not exist is a usage error with a hint', async () => {
  const r = await kubedos(['validate', '/nonexistent/kubedos.yaml'], env);
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/cannot read spec/);
  expect(r.stderr).toMatch(/hint: /);
});

test('an unknown command or option is a usage error (2) with help', async () => {
  const r = await kubedos(['frobnicate'], env);
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/unknown command 'frobnicate'/);
});

test('--help lists the commands, exit codes and every environment variable', async () => {
  const r = await kubedos(['--help'], env);
  expect(r.code).toBe(0);
  for (const cmd of ['validate', 'schema', 'doctor', 'dev', 'stack']) expect(r.stdout).toMatch(new RegExp(`^  ${cmd}\\b`, 'm'));
  expect(r.stdout).toMatch(/Exit codes: 0 ok/);
  for (const v of ENV_VARS) expect(r.stdout).toContain(v.name);
});

test('schema prints a JSON Schema that the README documents and editors can use', async () => {
  const out = path.join(mkdtempSync(path.join(os.tmpdir(), 'kubedos-schema-')), 'schema.json');
  const r = await kubedos(['schema', '--out', out], env);
  expect(r.code).toBe(0);
  const schema = JSON.parse(readFileSync(out, 'utf8'));
  expect(schema.$schema).toMatch(/2020-12/);
  expect(schema.additionalProperties).toBe(false);
});

test('NO_COLOR keeps escape codes out of the output', async () => {
  const r = await kubedos(['validate', fixture('five-mistakes.yaml')], { ...env, NO_COLOR: '1', FORCE_COLOR: undefined });
  expect(r.stderr).not.toMatch(/\x1b\[/);
});
