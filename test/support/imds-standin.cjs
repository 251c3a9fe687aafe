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

const REASONS = { 200: 'OK', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed' };

/** One request from stdin, its response to stdout, then exit (the guest's connection closes). */
function serveOnce(docFile, token, logFile) {
  const doc = JSON.parse(fs.readFileSync(docFile, 'utf8'));
  let buf = '';
  process.stdin.setEncoding('latin1');
  process.stdin.on('data', (chunk) => {
    buf += chunk;
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) return;
    const [requestLine, ...lines] = buf.slice(0, end).split('\r\n');
    const [method, url] = requestLine.split(' ');
    const headers = {};
    for (const l of lines) {
      const i = l.indexOf(':');
      if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    const { status, body } = answer(doc, token, method, url, headers);
    if (logFile) fs.appendFileSync(logFile, `${method} ${url} ${headers['x-aws-ec2-metadata-token'] ? 'token' : 'no-token'} ${status}\n`);
    const bytes = Buffer.from(body, 'utf8');
    process.stdout.write(`HTTP/1.1 ${status} ${REASONS[status]}\r\nContent-Type: text/plain\r\nContent-Length: ${bytes.length}\r\nConnection: close\r\n\r\n`);
    process.stdout.write(bytes, () => process.exit(0));
  });
}

if (require.main === module) serveOnce(process.argv[2], process.argv[3], process.argv[4]);
module.exports = { answer };
