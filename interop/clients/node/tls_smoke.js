#!/usr/bin/env node
// Node amqplib over TLS: node interop/clients/node/tls_smoke.js --port P --ca CA.pem
//     [--cert CERT.pem --key KEY.pem] [--external]
//
// Connects to amqps://localhost:P verifying the server against CA (and presenting the client
// certificate when given), logs in with guest/guest, or with EXTERNAL (the certificate's name)
// under --external; declares an exclusive server-named queue, publishes 20 messages (one of 200 KB)
// and consumes them with manual acks, checking bodies and order. Prints PASS and exits 0, or the
// failure and exits 1. Bounded by a 20 s watchdog.
'use strict';

const amqp = require('amqplib');
const fs = require('fs');

function arg(name) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main() {
  const port = Number(arg('--port'));
  const opts = { ca: [fs.readFileSync(arg('--ca'))], servername: 'localhost' };
  if (arg('--cert')) {
    opts.cert = fs.readFileSync(arg('--cert'));
    opts.key = fs.readFileSync(arg('--key'));
  }
  let url = `amqps://guest:guest@localhost:${port}`;
  if (process.argv.includes('--external')) {
    opts.credentials = amqp.credentials.external();
    url = `amqps://localhost:${port}`;
  }
  const conn = await amqp.connect(url, opts);
  const ch = await conn.createChannel();
  const { queue } = await ch.assertQueue('', { exclusive: true });
  const bodies = [];
  for (let i = 0; i < 20; i++) {
    bodies.push(i === 7 ? Buffer.alloc(200 * 1024, 'x') : Buffer.from(`message ${i}`));
  }
  const received = [];
  const done = new Promise((resolve, reject) => {
    ch.consume(queue, (msg) => {
      received.push(msg.content);
      ch.ack(msg);
      if (received.length === bodies.length) resolve();
    }).catch(reject);
  });
  for (const body of bodies) ch.sendToQueue(queue, body);
  await done;
  for (let i = 0; i < bodies.length; i++) {
    if (!received[i].equals(bodies[i])) throw new Error(`message ${i} differs`);
  }
  await ch.close();
  await conn.close();
  console.log('PASS');
}

const watchdog = setTimeout(() => {
  console.log('FAIL: timed out after 20 s');
  process.exit(1);
}, 20000);
main().then(() => clearTimeout(watchdog), (err) => {
  console.log(`FAIL: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
