'use strict';
// ssedemo's behaviour on Node's own http module: the benchmark's Node peer.
//
//     node node_peer.js PORT
//
// GET /sse sends the greeting, then every broadcast; POST /api with a JSON
// body broadcasts {"message": "Something changed"} to every open stream.

const http = require('node:http');

const GREETING = JSON.stringify({ message: 'Gotcha' });
const CHANGED = JSON.stringify({ message: 'Something changed' });
const MAX_BODY = 64 * 1024;
const KEEPALIVE_MS = 15000;

const streams = new Set();
let lastId = 0;

function reply(res, status, value) {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
}

function openStream(req, res) {
  res.writeHead(200, {
    'Content-Type': 'text/event-stream; charset=utf-8',
    'Cache-Control': 'no-cache',
    'X-Accel-Buffering': 'no',
  });
  res.write(`retry: 3000\n\ndata: ${GREETING}\n\n`);
  streams.add(res);
  res.on('close', () => streams.delete(res));
}

function api(req, res) {
  const chunks = [];
  let size = 0;
  req.on('data', (chunk) => {
    size += chunk.length;
    if (size <= MAX_BODY) chunks.push(chunk);
  });
  req.on('end', () => {
    if (size > MAX_BODY) return reply(res, 413, { error: 'body too large' });
    try {
      JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      return reply(res, 400, { error: 'body is not valid JSON' });
    }
    const id = String(++lastId);
    const wire = `id: ${id}\ndata: ${CHANGED}\n\n`; // encoded once for all
    for (const stream of streams) stream.write(wire);
    reply(res, 200, { id, delivered: streams.size });
  });
}

const server = http.createServer((req, res) => {
  const path = req.url.split('?')[0];
  if (path === '/sse' && req.method === 'GET') return openStream(req, res);
  if (path === '/api' && req.method === 'POST') return api(req, res);
  reply(res, 404, { error: 'not found' });
});

// A comment now and then keeps proxies from cutting quiet streams, as
// ssedemo's keep-alive does.
setInterval(() => {
  for (const stream of streams) stream.write(': keep-alive\n\n');
}, KEEPALIVE_MS).unref();

process.on('SIGTERM', () => {
  for (const stream of streams) stream.end();
  server.close(() => process.exit(0));
});

server.listen({ port: Number(process.argv[2]), host: '127.0.0.1', backlog: 4096 });
