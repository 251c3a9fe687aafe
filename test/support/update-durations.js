/** Writes ./test-durations.json (seconds per test file) from `jest --json --outputFile=FILE`. */
const fs = require('node:fs');
const path = require('node:path');

const [file] = process.argv.slice(2);
if (!file) {
  console.error('usage: node test/support/update-durations.js <jest --json output>');
  process.exit(2);
}
const root = path.resolve(__dirname, '../..');
// Files that did not run (a compile error, say) keep the figure the table had.
const out = path.join(__dirname, 'test-durations.json');
const previous = fs.existsSync(out) ? JSON.parse(fs.readFileSync(out, 'utf8')) : {};
const results = JSON.parse(fs.readFileSync(file, 'utf8')).testResults.filter((r) => r.assertionResults.length > 0);
const table = Object.fromEntries(
  [...Object.entries(previous), ...results
    .map((r) => [path.relative(root, r.name), Math.round((r.endTime - r.startTime) / 100) / 10])]
    .sort(([a], [b]) => (a < b ? -1 : 1)),
);
fs.writeFileSync(out, `${JSON.stringify(table, null, 2)}\n`);
console.log(`${Object.keys(table).length} files, ${Math.round(Object.values(table).reduce((a, b) => a + b, 0))} s in all`);
