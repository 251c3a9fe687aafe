'use strict';
/**
 * GCE METADATA SERVER STAND-IN (metadata.google.internal, 169.254.169.254, exists only on Compute
 * Engine). Answers like the real one under /computeMetadata/v1/: every request must carry
 * `Metadata-Flavor: Google` (403 without), every answer carries it back; a leaf is its text
 * (application/text), a directory the list of its keys (`name/` for subdirectories), anything else
 * 404. The document is the tree below /computeMetadata/v1/, e.g.
 * `{instance: {id: '123', hostname: 'n.c.p.internal', attributes: {'user-data': '#cloud-config …'}}}`.
 * It also serves the default service account's token (`instance/service-accounts/default/token`),
 * which Application Default Credentials ask for when GCE_METADATA_HOST points here.
 *
 * Plain JavaScript so QEMU's guestfwd can start it per connection (`node metadata.cjs DOC.json
 * [LOG]`: one request on stdin/stdout); the tests use `answer` behind node:http.
 */
const fs = require('node:fs');
const { serveOnce } = require('../serve-once.cjs');

function answer(doc, method, url, headers) {
  const h = { 'Metadata-Flavor': 'Google', Server: 'Metadata Server for VM' };
  if ((headers['metadata-flavor'] || '') !== 'Google') {
    return { status: 403, headers: { ...h, 'Content-Type': 'text/html; charset=UTF-8' }, body: 'Missing required header "Metadata-Flavor": "Google"' };
  }
  if (method !== 'GET') return { status: 405, headers: h, body: '' };
  const [path, query = ''] = url.split('?');
  if (!path.startsWith('/computeMetadata/v1/')) return { status: 404, headers: h, body: '' };
  if (path === '/computeMetadata/v1/instance/service-accounts/default/token') {
    const scopes = new URLSearchParams(query).get('scopes') || '';
    return { status: 200, headers: { ...h, 'Content-Type': 'application/json' }, body: JSON.stringify({ access_token: `ya29.standin.${Buffer.from(scopes).toString('base64url').slice(0, 16)}`, expires_in: 3599, token_type: 'Bearer' }) };
  }
  let node = doc;
  for (const part of path.slice('/computeMetadata/v1/'.length).split('/').filter(Boolean)) {
    if (node === null || typeof node !== 'object' || !(part in node)) return { status: 404, headers: { ...h, 'Content-Type': 'text/html; charset=UTF-8' }, body: 'Not Found' };
    node = node[part];
  }
  if (typeof node === 'string') return { status: 200, headers: { ...h, 'Content-Type': 'application/text' }, body: node };
  if (node && typeof node === 'object') return { status: 200, headers: { ...h, 'Content-Type': 'application/text' }, body: Object.keys(node).map((k) => (typeof node[k] === 'object' ? `${k}/` : k)).join('\n') + '\n' };
  return { status: 404, headers: h, body: '' };
}

/** One request from stdin, its response to stdout, then exit (the guest's connection closes). */
function serveDocument(docFile, logFile) {
  const doc = JSON.parse(fs.readFileSync(docFile, 'utf8'));
  serveOnce((method, url, headers) => {
    const r = answer(doc, method, url, headers);
    if (logFile) fs.appendFileSync(logFile, `${JSON.stringify({ method, url, status: r.status, flavor: headers['metadata-flavor'] })}\n`);
    return r;
  });
}

if (require.main === module) serveDocument(process.argv[2], process.argv[3]);
module.exports = { answer };
