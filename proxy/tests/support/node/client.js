// A Node stdlib client for the egress-proxy tests (no npm): CONNECT through the
// proxy, TLS over the tunnel, then one https request over it (tunnel.js).
// Prints JSON: status, decision, alpn, body.
// Usage: node client.js PROXY_HOST PROXY_PORT HOST PORT METHOD PATH CA_FILE
'use strict';
const fs = require('fs');
const { tunnelRequest } = require('./tunnel');

const [proxyHost, proxyPort, host, port, method, path, caFile] = process.argv.slice(2);
const ca = fs.readFileSync(caFile);
const fail = (msg) => { console.error('node client:', msg); process.exit(1); };
setTimeout(() => fail('timed out'), 30000).unref();

tunnelRequest({ proxyHost, proxyPort, host, port, ca, method, path }, fail, () => {}, (resp, sock) => {
  const chunks = [];
  resp.on('data', (c) => chunks.push(c));
  resp.on('end', () => {
    console.log(JSON.stringify({
      status: resp.statusCode,
      decision: resp.headers['x-egress-proxy-decision'] || '',
      alpn: sock.alpnProtocol || '',
      body: Buffer.concat(chunks).toString('utf8'),
    }));
    sock.destroy();
    process.exit(0);
  });
});
