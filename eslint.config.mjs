// Lint: the rules that matter here, checked with type information (typescript-eslint's project
// service reads tsconfig.json). `npm run lint`; part of `npm test`, before jest.
import tseslint from 'typescript-eslint';
import importX from 'eslint-plugin-import-x';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';
import { builtinModules } from 'node:module';

// What workflow code must never load: Node built-ins and I/O libraries (the sandbox would refuse
// them, or worse, they would break determinism). Same list as test/unit/architecture.test.ts.
const NOT_IN_WORKFLOWS = [
  ...builtinModules,
  ...builtinModules.map((m) => `node:${m}`),
  '@temporalio/worker',
  '@temporalio/client',
  '@temporalio/activity',
  'execa',
  'ssh2',
  '@aws-sdk/*',
  '@azure/*',
  '@google-cloud/*',
  'yaml',
  'commander',
];

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.venv/**', '.tools/**', 'coverage/**', '**/*.js', '**/*.cjs', '**/*.mjs'] },
  {
    files: ['**/*.ts'],
    languageOptions: {
      parser: tseslint.parser,
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { '@typescript-eslint': tseslint.plugin, 'import-x': importX },
    settings: {
      'import-x/resolver-next': [createTypeScriptImportResolver({ project: 'tsconfig.json' })],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
      'import-x/extensions': ['.ts'],
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // A promise nobody awaits loses its error and its ordering.
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false, attributes: false } }],
      '@typescript-eslint/await-thenable': 'error',
      // Type-only imports are erased: what a workflow imports as a type never reaches its bundle.
      '@typescript-eslint/consistent-type-imports': ['error', { prefer: 'type-imports', fixStyle: 'inline-type-imports', disallowTypeAnnotations: false }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true }],
      // Cycles make load order matter (a descriptor read before its module finished loading is undefined).
      // Type-only imports do not count; a lazy import() of a driver by its own descriptor does not either.
      'import-x/no-cycle': ['error', { ignoreExternal: true, allowUnsafeDynamicCyclicDependency: true }],
      'import-x/no-self-import': 'error',
      'no-restricted-syntax': ['error', { selector: 'TSEnumDeclaration', message: 'closed sets are `as const` objects with a derived union type, not enums' }],
    },
  },
  {
    files: ['workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ group: NOT_IN_WORKFLOWS, message: 'workflow code is deterministic and does no I/O: import activities as types, and only pure modules of src/' }] },
      ],
    },
  },
);
