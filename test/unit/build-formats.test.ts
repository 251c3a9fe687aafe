/** The output-format registry: one implementation per format name, validated before any work. */
import { BuildPlanError } from '../../src/errors';
import { FORMAT_NAMES, OUTPUT_FORMATS, describeFormats, formatNamed, resolveFormats } from '../../src/foundry';

const image = { name: 'img', role: 'worker', hostname: 'h', files: [], units: [], firstBoot: [], authorizedKeys: [], passwordLogin: false, diskSizeBytes: 2 ** 30 };

test('every registered format has its own name, a description and the tools it needs', () => {
  expect(FORMAT_NAMES).toEqual(OUTPUT_FORMATS.map((f) => f.name));
  for (const name of FORMAT_NAMES) expect(formatNamed(name).name).toBe(name);
  expect(new Set(OUTPUT_FORMATS).size).toBe(OUTPUT_FORMATS.length);
  for (const f of OUTPUT_FORMATS) {
    expect(f.description.length).toBeGreaterThan(10);
    expect(Array.isArray(f.tools)).toBe(true);
  }
});

test('format names and artifact file names are unique', () => {
  expect(new Set(FORMAT_NAMES).size).toBe(FORMAT_NAMES.length);
  const files = OUTPUT_FORMATS.map((f) => f.fileName(image));
  expect(new Set(files).size).toBe(files.length);
  for (const f of files) expect(f.startsWith('img.')).toBe(true);
});

test('resolveFormats keeps the requested order, drops duplicates, rejects unknown names up front', () => {
  expect(resolveFormats(['qcow2', 'raw', 'qcow2']).map((f) => f.name)).toEqual(['qcow2', 'raw']);
  let err: unknown;
  try {
    resolveFormats(['raw', 'vhdx', 'wim']);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(BuildPlanError);
  expect((err as BuildPlanError).problems).toEqual([
    `unknown output format "vhdx" (known: ${FORMAT_NAMES.join(', ')})`,
    `unknown output format "wim" (known: ${FORMAT_NAMES.join(', ')})`,
  ]);
});

test('help text has one line per format, generated from the table', () => {
  const lines = describeFormats().split('\n');
  expect(lines).toHaveLength(FORMAT_NAMES.length);
  for (const [i, name] of FORMAT_NAMES.entries()) expect(lines[i]!.startsWith(name)).toBe(true);
});

describe('producing formats concurrently', () => {
  const { produceAll } = require('../../src/foundry/pipeline') as typeof import('../../src/foundry/pipeline');
  const { logger } = require('../../src/log') as typeof import('../../src/log');
  const ctx = () => ({ plan: {}, options: {}, log: logger, workDir: '/nonexistent', ranMmdebstrap: false, shared: new Map(), artifacts: [], timings: {} }) as never;
  const artifact = (format: string) => ({ format, file: `${format}.out`, path: `/out/${format}.out`, sha256: '0'.repeat(64), size: 1 });

  test('the first failure is reported, after the other formats were stopped and have settled', async () => {
    const events: string[] = [];
    const slow = {
      name: 'slow', description: '', fileName: () => 'slow',
      produce: (c: { options: { signal: AbortSignal } }) =>
        new Promise((_resolve, reject) => {
          c.options.signal.addEventListener('abort', () => setTimeout(() => {
            events.push('slow stopped');
            reject(new Error('slow: cancelled'));
          }, 50));
        }),
    };
    const failing = { name: 'failing', description: '', fileName: () => 'failing', produce: async () => { events.push('failing failed'); throw new Error('failing: disk full'); } };
    await expect(produceAll(ctx(), [slow, failing] as never)).rejects.toThrow('failing: disk full');
    expect(events).toEqual(['failing failed', 'slow stopped']);
  });

  test('all succeed: artifacts in the plan order, whatever order they finish in', async () => {
    const after = (ms: number, format: string) => ({ name: format, description: '', fileName: () => format, produce: () => new Promise((r) => setTimeout(() => r([artifact(format)]), ms)) });
    const out = await produceAll(ctx(), [after(30, 'a'), after(1, 'b')] as never);
    expect(out.flat().map((a) => a.format)).toEqual(['a', 'b']);
  });
});
