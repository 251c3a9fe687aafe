/** Rendering a SpecError for people. */
import type { SpecError, SpecIssue } from '../errors';

function line(err: SpecError, issue: SpecIssue): string {
  const where = issue.location ?? err.file;
  return issue.path ? `${where} ${issue.path}: ${issue.message}` : `${where} ${issue.message}`;
}

/**
 * One line per issue, `location path: message`, e.g.
 * `kubedos.yaml:12:7 images.worker.outputs[2]: unknown format "qcow3"; expected one of raw, …`.
 * The CLI prints this after the error's own message and before its hint.
 */
export function formatSpecError(err: SpecError): string {
  return err.issues.map((issue) => line(err, issue)).join('\n');
}
