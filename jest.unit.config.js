/**
 * `npm run test:unit`: the domain core's own tests (test/unit), with no Temporal server, no images
 * and no VMs — the edit-test loop. `npm test` runs them again with everything else.
 */
const base = require('./jest.config');

/** @type {import('jest').Config} */
module.exports = {
  ...base,
  roots: ['<rootDir>/test/unit'],
  globalSetup: undefined,
  globalTeardown: undefined,
};
