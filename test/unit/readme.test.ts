/** The README's promises that code can check: the two commands, CI, the environment table. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ENV_VARS } from '../../src/config/env';

const ROOT = path.resolve(__dirname, '..', '..');
const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');

test('the README opens with exactly two commands, and .ci/run runs the test one', () => {
  const firstBlock = /```bash\n([\s\S]*?)```/.exec(readme)![1]!;
  const commands = firstBlock.split('\n').map((l) => l.replace(/#.*$/, '').trim()).filter(Boolean);
  expect(commands).toEqual(['./bin/kubedos up examples/quickstart', 'npm test']);
  const ci = readFileSync(path.join(ROOT, '.ci', 'run'), 'utf8').split('\n').filter((l) => l.trim() && !l.startsWith('#') && !l.startsWith('set ') && !l.startsWith('cd '));
  expect(ci).toEqual(['npm test']);
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  // Setup, then lint and the type check of everything (tests included), then the suite.
  expect(pkg.scripts.test).toBe("scripts/setup --tests && npm run --silent lint && npm run --silent typecheck && jest");
});

test('every environment variable the code reads is documented in the README with its default', () => {
  for (const v of ENV_VARS) {
    const row = readme.split('\n').find((l) => l.startsWith(`| \`${v.name}\` |`));
    expect(row).toBeDefined();
    expect(row).toContain(v.default);
  }
});
