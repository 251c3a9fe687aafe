'use strict';
/**
 * WIRESERVER STAND-IN (Azure's fabric endpoint, 168.63.129.16, exists only inside Azure). Answers
 * the two requests of the provisioning protocol Microsoft documents for images without an agent,
 * in its wire format (x-ms-version 2012-11-30, XML):
 *
 *   GET  /machine/?comp=goalstate  → a GoalState with Incarnation, ContainerId, RoleInstance/InstanceId
 *   POST /machine/?comp=health     → 200 when the Health document reports exactly that incarnation,
 *                                     container and instance with <State>Ready</State>; 400 otherwise
 *
 * Both need `x-ms-version: 2012-11-30` (400 without, as the WireServer does). Plain JavaScript so
 * QEMU's guestfwd can start it per connection (`node wireserver.cjs STATE.json LOG`: one request on
 * stdin/stdout, each request appended to LOG as a JSON line); the unit tests use `answer` behind
 * node:http.
 */
const fs = require('node:fs');

function goalState(s) {
  return [
    '<?xml version="1.0" encoding="utf-8"?>',
    '<GoalState xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="goalstate10.xsd">',
    '  <Version>2012-11-30</Version>',
    `  <Incarnation>${s.incarnation}</Incarnation>`,
    '  <Machine>',
    '    <ExpectedState>Started</ExpectedState>',
    '    <StopRolesDeadlineHint>300000</StopRolesDeadlineHint>',
    '    <LBProbePorts><Port>16001</Port></LBProbePorts>',
    '    <ExpectHealthReport>FALSE</ExpectHealthReport>',
    '  </Machine>',
    '  <Container>',
    `    <ContainerId>${s.containerId}</ContainerId>`,
    '    <RoleInstanceList>',
    '      <RoleInstance>',
    `        <InstanceId>${s.instanceId}</InstanceId>`,
    '        <State>Started</State>',
    '        <Configuration>',
    `          <HostingEnvironmentConfig>http://168.63.129.16:80/machine/${s.containerId}/${s.instanceId}?comp=config&amp;type=hostingEnvironmentConfig&amp;incarnation=${s.incarnation}</HostingEnvironmentConfig>`,
    `          <SharedConfig>http://168.63.129.16:80/machine/${s.containerId}/${s.instanceId}?comp=config&amp;type=sharedConfig&amp;incarnation=${s.incarnation}</SharedConfig>`,
    `          <ExtensionsConfig>http://168.63.129.16:80/machine/${s.containerId}/${s.instanceId}?comp=config&amp;type=extensionsConfig&amp;incarnation=${s.incarnation}</ExtensionsConfig>`,
    `          <FullConfig>http://168.63.129.16:80/machine/${s.containerId}/${s.instanceId}?comp=config&amp;type=fullConfig&amp;incarnation=${s.incarnation}</FullConfig>`,
    '          <ConfigName>kubedos.0.kubedos_IN_0.1.xml</ConfigName>',
    '        </Configuration>',
    '      </RoleInstance>',
    '    </RoleInstanceList>',
    '  </Container>',
    '</GoalState>',
    '',
  ].join('\r\n');
}

const text = (xml, name) => {
  const m = new RegExp(`<(?:[A-Za-z0-9_]+:)?${name}>([^<]*)</`).exec(xml);
  return m ? m[1].trim() : undefined;
};

/**
 * One request: {status, body, report?}. `report` is set for a health report that was accepted
 * (`state` is what it said: Ready, NotReady, …).
 */
function answer(s, method, url, headers, body) {
  if (headers['x-ms-version'] !== '2012-11-30') return { status: 400, body: '<?xml version="1.0" encoding="utf-8"?><Error><Code>MissingHeader</Code><Message>x-ms-version 2012-11-30 is required</Message></Error>' };
  if (method === 'GET' && url === '/machine/?comp=goalstate') return { status: 200, body: goalState(s), type: 'text/xml; charset=utf-8' };
  if (method === 'POST' && url === '/machine/?comp=health') {
    if (!/^text\/xml/.test(headers['content-type'] || '')) return { status: 400, body: 'Content-Type must be text/xml' };
    const incarnation = text(body, 'GoalStateIncarnation');
    const containerId = text(body, 'ContainerId');
    const instanceId = text(body, 'InstanceId');
    const state = text(body, 'State');
    if (!/^<\?xml[^>]*\?>\s*<Health[\s>]/.test(body.trim())) return { status: 400, body: 'not a Health document' };
    if (incarnation !== String(s.incarnation) || containerId !== s.containerId || instanceId !== s.instanceId || !state) {
      return { status: 400, body: `<?xml version="1.0" encoding="utf-8"?><Error><Code>InvalidHealthReport</Code><Message>goal state ${s.incarnation}/${s.containerId}/${s.instanceId}, got ${incarnation}/${containerId}/${instanceId}</Message></Error>` };
    }
    return { status: 200, body: '', report: { incarnation, containerId, instanceId, state } };
  }
  return { status: 404, body: '' };
}

const REASONS = { 200: 'OK', 400: 'Bad Request', 404: 'Not Found' };

/** One request from stdin, its response to stdout (and a line in the log), then exit. */
function serveOnce(stateFile, logFile) {
  const s = JSON.parse(fs.readFileSync(stateFile, 'utf8'));
  let buf = Buffer.alloc(0);
  process.stdin.on('data', (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) return;
    const [requestLine, ...lines] = buf.subarray(0, end).toString('latin1').split('\r\n');
    const [method, url] = requestLine.split(' ');
    const headers = {};
    for (const l of lines) {
      const i = l.indexOf(':');
      if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    const length = Number(headers['content-length'] || 0);
    if (buf.length < end + 4 + length) return;
    const body = buf.subarray(end + 4, end + 4 + length).toString('utf8');
    const r = answer(s, method, url, headers, body);
    fs.appendFileSync(logFile, `${JSON.stringify({ method, url, status: r.status, agent: headers['x-ms-agent-name'], report: r.report })}\n`);
    const bytes = Buffer.from(r.body, 'utf8');
    process.stdout.write(`HTTP/1.1 ${r.status} ${REASONS[r.status]}\r\nContent-Type: ${r.type || 'text/plain'}\r\nContent-Length: ${bytes.length}\r\n\r\n`);
    process.stdout.write(bytes, () => process.exit(0));
  });
}

if (require.main === module) serveOnce(process.argv[2], process.argv[3]);
module.exports = { answer, goalState };
