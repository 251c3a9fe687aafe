/**
 * Runs the slowest test files first, from durations measured in a full run and kept in
 * ./test-durations.json, so two workers finish together. Jest's own sequencer does the same from
 * its cache of the last run, which a fresh clone (CI) does not have: it would then order by file
 * size, and a long boot test that happened to start last would run alone at the end.
 * `node test/support/update-durations.js <jest --json output>` refreshes the table.
 */
const path = require('node:path');
const Sequencer = require('@jest/test-sequencer').default;
const durations = require('./test-durations.json');

const ROOT = path.resolve(__dirname, '../..');
/** A file not yet in the table: a guess between the quick and the slow ones. */
const UNKNOWN_SECONDS = 60;

class DurationSequencer extends Sequencer {
  sort(tests) {
    const seconds = (test) => durations[path.relative(ROOT, test.path)] ?? UNKNOWN_SECONDS;
    return [...tests].sort((a, b) => seconds(b) - seconds(a) || (a.path < b.path ? -1 : 1));
  }
}

module.exports = DurationSequencer;
