// One HTTPS request through the proxy with Node's stdlib (no npm): CONNECT
// with http.request, TLS over the tunnel with tls.connect({socket}), then the
// request over it with https.request. Used by client.js and resume.js.
'use strict';
const http = require('http');
const https = require('https');
const tls = require('tls');

// o: proxyHost, proxyPort, host, port, ca, method, path, and optionally
// headers and a TLS session to resume. onSocket(sock) runs before the
// handshake; onResponse(resp, sock) once the response head is in; fail(msg)
// on any error.
function tunnelRequest(o, fail, onSocket, onResponse) {
  const connectReq = http.request({
    host: o.proxyHost, port: Number(o.proxyPort), method: 'CONNECT',
    path: `${o.host}:${o.port}`, headers: { host: `${o.host}:${o.port}` },
  });
  connectReq.on('error', (e) => fail(e.message));
  connectReq.on('connect', (res, socket) => {
    if (res.statusCode !== 200) fail(`CONNECT answered ${res.statusCode}`);
    const options = { socket, servername: o.host, ca: o.ca, session: o.session, ALPNProtocols: ['http/1.1'] };
    const sock = tls.connect(options, () => {
      const req = https.request({
        host: o.host, port: Number(o.port), method: o.method, path: o.path,
        headers: o.headers, createConnection: () => sock,
      }, (resp) => onResponse(resp, sock));
      req.on('error', (e) => fail(e.message));
      req.end();
    });
    sock.on('error', (e) => fail(e.message));
    onSocket(sock);
  });
  connectReq.end();
}

module.exports = { tunnelRequest };
