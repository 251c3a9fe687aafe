/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': 'ts-jest' },
  globalSetup: '<rootDir>/test/support/global-setup.ts',
  globalTeardown: '<rootDir>/test/support/global-teardown.ts',
  testTimeout: 120_000,
  // Tests share one dev server and one workflow bundle; two workers fit 2 cores.
  maxWorkers: 2,
  // The slowest files first, from a measured table, also on a fresh clone without jest's cache.
  testSequencer: '<rootDir>/test/support/duration-sequencer.js',
  reporters: ['default', '<rootDir>/test/support/summary-reporter.js'],
};
