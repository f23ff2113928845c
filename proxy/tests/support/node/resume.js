// TLS session resumption through the proxy with Node's stdlib (Node's https
// agent resumes sessions the same way): two connections in turn, each a
// CONNECT, TLS over the tunnel and one request (tunnel.js); the second offers
// the session the first received. Prints JSON: per connection the status, the
// decision, whether the session was resumed and how many session tickets
// arrived.
// Usage: node resume.js PROXY_HOST PROXY_PORT HOST PORT PATH1 PATH2 CA_FILE
'use strict';
const fs = require('fs');
const { tunnelRequest } = require('./tunnel');

const [proxyHost, proxyPort, host, port, path1, path2, caFile] = process.argv.slice(2);
const ca = fs.readFileSync(caFile);
const fail = (msg) => { console.error('node resume:', msg); process.exit(1); };
setTimeout(() => fail('timed out'), 30000).unref();

function once(path, session) {
  return new Promise((resolve) => {
    const tickets = [];
    const o = {
      proxyHost, proxyPort, host, port, ca, method: 'GET', path, session,
      headers: { connection: 'close' },
    };
    tunnelRequest(o, fail, (sock) => sock.on('session', (s) => tickets.push(s)), (resp, sock) => {
      resp.resume();
      resp.on('end', () => resolve({
        status: resp.statusCode,
        decision: resp.headers['x-egress-proxy-decision'] || '',
        reused: sock.isSessionReused(),
        tickets: tickets.length,
        session: tickets[tickets.length - 1],
      }));
    });
  });
}

(async () => {
  const first = await once(path1, undefined);
  if (!first.session) fail('no session ticket arrived');
  const second = await once(path2, first.session);
  for (const r of [first, second]) delete r.session;
  console.log(JSON.stringify({ first, second }));
  process.exit(0);
})();
