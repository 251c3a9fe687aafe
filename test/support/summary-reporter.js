/**
 * Prints one plain closing line, "tests: N passed, N failed, N skipped", after jest's own
 * summary, so CI logs carry a count in the form every runner understands.
 */
class SummaryReporter {
  onRunComplete(_contexts, results) {
    const skipped = results.numPendingTests + results.numTodoTests;
    process.stdout.write(`tests: ${results.numPassedTests} passed, ${results.numFailedTests} failed, ${skipped} skipped\n`);
  }
}
module.exports = SummaryReporter;
