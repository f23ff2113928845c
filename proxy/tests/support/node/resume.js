// TLS session resumption through the proxy with Node's stdlib (Node's https
// agent resumes sessions the same way): two connections in turn, each a
// CONNECT, TLS over the tunnel and one request; the second offers the session
// the first received. Prints JSON: per connection the status, the decision,
// whether the session was resumed and how many session tickets arrived.
// Usage: node resume.js PROXY_HOST PROXY_PORT HOST PORT PATH1 PATH2 CA_FILE
'use strict';
const http = require('http');
const https = require('https');
const tls = require('tls');
const fs = require('fs');

const [proxyHost, proxyPort, host, port, path1, path2, caFile] = process.argv.slice(2);
const ca = fs.readFileSync(caFile);
const fail = (msg) => { console.error('node resume:', msg); process.exit(1); };
setTimeout(() => fail('timed out'), 30000).unref();

function once(path, session) {
  return new Promise((resolve) => {
    const connectReq = http.request({
      host: proxyHost, port: Number(proxyPort), method: 'CONNECT',
      path: `${host}:${port}`, headers: { host: `${host}:${port}` },
    });
    connectReq.on('error', (e) => fail(e.message));
    connectReq.on('connect', (res, socket) => {
      if (res.statusCode !== 200) fail(`CONNECT answered ${res.statusCode}`);
      const tickets = [];
      const sock = tls.connect({ socket, servername: host, ca, session, ALPNProtocols: ['http/1.1'] }, () => {
        const req = https.request({
          host, port: Number(port), method: 'GET', path,
          headers: { connection: 'close' },
          createConnection: () => sock,
        }, (resp) => {
          resp.resume();
          resp.on('end', () => resolve({
            status: resp.statusCode,
            decision: resp.headers['x-egress-proxy-decision'] || '',
            reused: sock.isSessionReused(),
            tickets: tickets.length,
            session: tickets[tickets.length - 1],
          }));
        });
        req.on('error', (e) => fail(e.message));
        req.end();
      });
      sock.on('session', (s) => tickets.push(s));
      sock.on('error', (e) => fail(e.message));
    });
    connectReq.end();
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
