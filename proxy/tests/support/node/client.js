// A Node stdlib client for the egress-proxy tests (no npm): CONNECT through the
// proxy with http.request, TLS over the tunnel with tls.connect({socket}), then
// one https request over it. Prints JSON: status, decision, alpn, body.
// Usage: node client.js PROXY_HOST PROXY_PORT HOST PORT METHOD PATH CA_FILE
'use strict';
const http = require('http');
const https = require('https');
const tls = require('tls');
const fs = require('fs');

const [proxyHost, proxyPort, host, port, method, path, caFile] = process.argv.slice(2);
const ca = fs.readFileSync(caFile);
const fail = (msg) => { console.error('node client:', msg); process.exit(1); };
setTimeout(() => fail('timed out'), 30000).unref();

const connectReq = http.request({
  host: proxyHost, port: Number(proxyPort), method: 'CONNECT',
  path: `${host}:${port}`, headers: { host: `${host}:${port}` },
});
connectReq.on('error', (e) => fail(e.message));
connectReq.on('connect', (res, socket) => {
  if (res.statusCode !== 200) fail(`CONNECT answered ${res.statusCode}`);
  const sock = tls.connect({ socket, servername: host, ca, ALPNProtocols: ['http/1.1'] }, () => {
    const req = https.request({
      host, port: Number(port), method, path,
      createConnection: () => sock,
    }, (resp) => {
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
    req.on('error', (e) => fail(e.message));
    req.end();
  });
  sock.on('error', (e) => fail(e.message));
});
connectReq.end();
