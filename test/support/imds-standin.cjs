'use strict';
/**
 * EC2 IMDS STAND-IN (no EC2 here). Answers like EC2's instance metadata service with
 * `HttpTokens: required` (IMDSv2 only, what the aws driver launches): PUT /latest/api/token with
 * X-aws-ec2-metadata-token-ttl-seconds (1..21600) gives a token (400 without the header, 403 when
 * the request carries X-Forwarded-For, as IMDS refuses proxied token requests); every GET must
 * carry X-aws-ec2-metadata-token (else 401); /latest/meta-data/<key> and /latest/user-data (or a
 * dated API version instead of latest), /latest/dynamic/… are
 * served from the document, a directory as the list of its keys (subdirectories with '/'),
 * anything else 404. Plain JavaScript so QEMU's guestfwd can start it per connection
 * (`node imds-standin.cjs DOC.json TOKEN [LOG]`: one request on stdin/stdout, each request line
 * appended to LOG); the unit tests use `answer` behind node:http.
 *
 * Document: { "meta-data": { "instance-id": "i-…", "local-ipv4": "10.0.0.5", … }, "user-data": "…" }
 */
const fs = require('node:fs');
const { serveOnce } = require('./serve-once.cjs');

function answer(doc, token, method, url, headers) {
  const path = url.split('?')[0];
  if (path === '/latest/api/token') {
    if (method !== 'PUT') return { status: 405, body: '' };
    if (headers['x-forwarded-for'] !== undefined) return { status: 403, body: '' };
    const ttl = Number(headers['x-aws-ec2-metadata-token-ttl-seconds']);
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > 21600) return { status: 400, body: '' };
    return { status: 200, body: token };
  }
  if (method !== 'GET') return { status: 405, body: '' };
  if (headers['x-aws-ec2-metadata-token'] !== token) return { status: 401, body: '' };
  const parts = path.split('/').filter(Boolean);
  // `latest` or a dated API version (cloud-init asks for those first); all serve the same tree.
  if (parts[0] !== 'latest' && !/^\d{4}-\d{2}-\d{2}$/.test(parts[0] ?? '')) return { status: 404, body: '' };
  let node = { ...doc };
  for (const part of parts.slice(1)) {
    if (node === null || typeof node !== 'object' || !(part in node)) return { status: 404, body: '' };
    node = node[part];
  }
  if (typeof node === 'string') return { status: 200, body: node };
  if (node && typeof node === 'object') return { status: 200, body: Object.keys(node).map((k) => (typeof node[k] === 'object' ? `${k}/` : k)).join('\n') };
  return { status: 404, body: '' };
}

/** One request from stdin, its response to stdout, then exit (the guest's connection closes). */
function serveDocument(docFile, token, logFile) {
  const doc = JSON.parse(fs.readFileSync(docFile, 'utf8'));
  serveOnce((method, url, headers) => {
    const { status, body } = answer(doc, token, method, url, headers);
    if (logFile) fs.appendFileSync(logFile, `${method} ${url} ${headers['x-aws-ec2-metadata-token'] ? 'token' : 'no-token'} ${status}\n`);
    // Content-Length: serveOnce sets the body's, in this place (before Connection, the order IMDS sends).
    return { status, headers: { 'Content-Type': 'text/plain', 'Content-Length': 0, Connection: 'close' }, body };
  });
}

if (require.main === module) serveDocument(process.argv[2], process.argv[3], process.argv[4]);
module.exports = { answer };
