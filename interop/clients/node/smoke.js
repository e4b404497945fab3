#!/usr/bin/env node
// Node amqplib smoke scenario: node interop/clients/node/smoke.js --host H --port P
//
// Against any AMQP 0-9-1 broker (ours or RabbitMQ), with guest/guest on vhost "/":
// - declares a headers exchange and a queue bound with x-match=all (confirm channel, prefetch 3);
// - publishes 10 messages with every basic property and a header table of mixed types, waits for
//   the confirms; a mandatory publish nobody routes must come back on the 'return' event;
// - consumes them with manual acks and checks bodies, properties, headers and order;
// - get + nack(requeue) redelivers with redelivered=true;
// - frame_max is negotiated down to 4096, so a 100 KB body travels as ~25 frames each way;
// - a server-named exclusive queue (amq.gen-...) is consumed with no-ack;
// - deletes the queue with ifEmpty (every ack settled) and the exchange.
// Prints PASS and exits 0, or prints the failure and exits 1. Bounded by a 30 s watchdog.
// Dependencies: `npm ci --prefix interop/clients/node` (amqplib, pinned in package-lock.json).
'use strict';

const crypto = require('crypto');
const amqp = require('amqplib');
const fs = require('fs');
const path = require('path');

function packageVersion(name) {
  // amqplib's "exports" hides its package.json from require(); find it next to its entry point.
  let dir = path.dirname(require.resolve(name));
  for (;;) {
    const file = path.join(dir, 'package.json');
    if (fs.existsSync(file)) {
      const pkg = JSON.parse(fs.readFileSync(file, 'utf8'));
      if (pkg.name === name) return pkg.version;
    }
    const up = path.dirname(dir);
    if (up === dir) return 'unknown';
    dir = up;
  }
}

const amqplibVersion = packageVersion('amqplib');

const N = 10;
const TIMEOUT_MS = 10000;

function parseArgs(argv) {
  const args = { host: '127.0.0.1', port: 5672 };
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--host') args.host = argv[++i];
    else if (argv[i] === '--port') args.port = Number(argv[++i]);
    else rest.push(argv[i]);
  }
  if (rest.length > 0) args.host = rest[0];
  if (rest.length > 1) args.port = Number(rest[1]);
  if (!Number.isInteger(args.port)) throw new Error(`bad port: ${args.port}`);
  return args;
}

function assert(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}

function assertEqual(got, want, what) {
  const g = JSON.stringify(got);
  const w = JSON.stringify(want);
  if (g !== w) throw new Error(`${what}: got ${g}, expected ${w}`);
}

function withTimeout(promise, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${TIMEOUT_MS} ms: ${what}`)), TIMEOUT_MS);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

function headersFor(i) {
  return {
    kind: 'smoke',
    'x-index': i,
    'x-text': 'héllo wörld',
    'x-flag': i % 2 === 0,
    'x-float': 1.5,
    'x-nested': { k: 'v', n: 7 },
    'x-list': [1, 'two', false],
  };
}

function optionsFor(i, tag) {
  return {
    contentType: 'application/json',
    contentEncoding: 'utf-8',
    headers: headersFor(i),
    persistent: true,
    priority: i % 10,
    correlationId: `corr-${i}`,
    replyTo: `reply.${tag}`,
    expiration: '60000',
    messageId: `${tag}-${i}`,
    timestamp: 1700000000 + i,
    type: 'smoke',
    userId: 'guest',
    appId: 'node_smoke',
  };
}

function bodyFor(i, tag) {
  return Buffer.from(JSON.stringify({ i, tag, text: 'amqplib message' }));
}

function checkMessage(msg, i, tag, exchange) {
  assertEqual(msg.content.toString(), bodyFor(i, tag).toString(), `message ${i} body`);
  const p = msg.properties;
  const want = optionsFor(i, tag);
  assertEqual(p.contentType, want.contentType, `message ${i} contentType`);
  assertEqual(p.contentEncoding, want.contentEncoding, `message ${i} contentEncoding`);
  assertEqual(p.deliveryMode, 2, `message ${i} deliveryMode`);
  for (const key of ['priority', 'correlationId', 'replyTo', 'expiration', 'messageId',
    'timestamp', 'type', 'userId', 'appId']) {
    assertEqual(p[key], want[key], `message ${i} ${key}`);
  }
  assertEqual(p.headers, headersFor(i), `message ${i} headers`);
  assertEqual(msg.fields.exchange, exchange, `message ${i} exchange`);
  assertEqual(msg.fields.routingKey, `rk.${i}`, `message ${i} routingKey`);
  assertEqual(msg.fields.redelivered, false, `message ${i} redelivered`);
}

async function scenario(host, port) {
  const tag = crypto.randomBytes(4).toString('hex');
  const queue = `smoke.node.${tag}`;
  const exchange = `smoke.node.x.${tag}`;
  const conn = await withTimeout(amqp.connect({
    protocol: 'amqp', hostname: host, port, username: 'guest', password: 'guest', vhost: '/',
    heartbeat: 0, frameMax: 4096, // the minimum: bodies travel in many frames both ways
  }, { timeout: TIMEOUT_MS, clientProperties: { connection_name: 'node_smoke' } }), 'connect');
  conn.on('error', (err) => console.error('connection error:', err.message));
  try {
    const ch = await conn.createConfirmChannel();
    ch.on('error', (err) => console.error('channel error:', err.message));
    await ch.prefetch(3);
    await ch.assertExchange(exchange, 'headers', { durable: false, autoDelete: false });
    const q = await ch.assertQueue(queue, { durable: false, exclusive: false, autoDelete: false });
    assertEqual([q.queue, q.messageCount, q.consumerCount], [queue, 0, 0], 'queue.declare-ok');
    await ch.bindQueue(queue, exchange, '', { 'x-match': 'all', kind: 'smoke' });

    const returned = [];
    ch.on('return', (msg) => returned.push([msg.fields.replyCode, msg.fields.replyText,
      msg.fields.exchange, msg.fields.routingKey, msg.content.toString()]));
    for (let i = 0; i < N; i++) {
      ch.publish(exchange, `rk.${i}`, bodyFor(i, tag), optionsFor(i, tag));
    }
    // headers don't match the binding (kind differs): unroutable, comes back with basic.return
    ch.publish(exchange, 'nowhere', Buffer.from('nobody'), { mandatory: true, headers: { kind: 'other' } });
    await withTimeout(ch.waitForConfirms(), 'publisher confirms');
    assertEqual(returned, [[312, 'NO_ROUTE', exchange, 'nowhere', 'nobody']], 'basic.return');

    const check = await ch.checkQueue(queue);
    assertEqual(check.messageCount, N, 'passive declare message_count');

    const got = [];
    const consumerTag = `node-smoke-${tag}`;
    await withTimeout(new Promise((resolve, reject) => {
      ch.consume(queue, (msg) => {
        try {
          assert(msg !== null, 'consumer cancelled by the server');
          checkMessage(msg, got.length, tag, exchange);
          assertEqual(msg.fields.consumerTag, consumerTag, 'consumerTag');
          got.push(msg.properties.messageId);
          ch.ack(msg);
          if (got.length === N) resolve();
        } catch (err) {
          reject(err);
        }
      }, { noAck: false, consumerTag }).then(
        (ok) => { if (ok.consumerTag !== consumerTag) reject(new Error(`consume-ok tag ${ok.consumerTag}`)); },
        reject);
    }), `${N} deliveries`);
    assertEqual(got, Array.from({ length: N }, (_, i) => `${tag}-${i}`), 'delivery order');
    await ch.cancel(consumerTag);

    // get, nack with requeue, get again: redelivered
    ch.publish(exchange, 'again', Buffer.from('again'), { headers: { kind: 'smoke', n: 1 } });
    await withTimeout(ch.waitForConfirms(), 'confirm of "again"');
    const m1 = await ch.get(queue, { noAck: false });
    assert(m1 && m1.content.toString() === 'again' && !m1.fields.redelivered, 'first get');
    assertEqual(m1.fields.messageCount, 0, 'get-ok message_count');
    ch.nack(m1, false, true);
    const m2 = await ch.get(queue, { noAck: false });
    assert(m2 && m2.content.toString() === 'again' && m2.fields.redelivered, 'redelivered get');
    assertEqual(m2.properties.headers, { kind: 'smoke', n: 1 }, 'redelivered headers');
    ch.ack(m2);
    assertEqual(await ch.get(queue, { noAck: false }), false, 'get on an empty queue');

    // a body much larger than the negotiated frame_max (4096): split into frames both ways
    const big = Buffer.alloc(100 * 1024 + 7);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31 + 7) & 0xff;
    ch.publish(exchange, 'big', big, { headers: { kind: 'smoke', big: true }, messageId: 'big' });
    await withTimeout(ch.waitForConfirms(), 'confirm of the large message');
    const m3 = await ch.get(queue, { noAck: false });
    assert(m3 && m3.properties.messageId === 'big', 'large message missing');
    assert(m3.content.equals(big), `large body differs (got ${m3.content.length} bytes)`);
    ch.ack(m3);

    // a server-named exclusive queue, consumed with no-ack
    const anon = await ch.assertQueue('', { exclusive: true });
    assert(anon.queue.startsWith('amq.gen-'), `server-named queue ${anon.queue}`);
    ch.sendToQueue(anon.queue, Buffer.from('to amq.gen'), { contentType: 'text/plain' });
    await withTimeout(ch.waitForConfirms(), 'confirm to the server-named queue');
    await withTimeout(new Promise((resolve, reject) => {
      ch.consume(anon.queue, (msg) => {
        if (msg && msg.content.toString() === 'to amq.gen' && msg.fields.routingKey === anon.queue) resolve();
        else reject(new Error(`unexpected delivery ${msg && msg.content}`));
      }, { noAck: true }).catch(reject);
    }), 'no-ack delivery from the server-named queue');

    await ch.unbindQueue(queue, exchange, '', { 'x-match': 'all', kind: 'smoke' });
    await ch.deleteQueue(queue, { ifEmpty: true });
    await ch.deleteExchange(exchange, { ifUnused: true });
    await ch.close();
  } finally {
    await conn.close().catch(() => {});
  }
}

async function main() {
  const watchdog = setTimeout(() => {
    console.log(`FAIL amqplib ${amqplibVersion}: watchdog: scenario exceeded 30 s`);
    process.exit(1);
  }, 30000);
  let code = 0;
  try {
    const { host, port } = parseArgs(process.argv.slice(2));
    await scenario(host, port);
    console.log(`PASS amqplib ${amqplibVersion}`);
  } catch (err) {
    console.error(err && err.stack ? err.stack : err);
    console.log(`FAIL amqplib ${amqplibVersion}: ${err && err.message ? err.message : err}`);
    code = 1;
  }
  clearTimeout(watchdog);
  process.exit(code);
}

main();
