#!/usr/bin/env node
// Node amqplib closing-handshake scenario: node interop/clients/node/close_burst.js --host H --port P
//
// amqplib multiplexes its channels onto the socket, so when connection.close is written the
// channels' earlier frames may still be on their way: the broker sees close, then more frames.
// A broker that answers close-ok and closes its socket at once leaves those frames unread, the
// kernel answers them with a reset, and amqplib reports EPIPE/ECONNRESET as an 'error' (uncaught,
// it crashes the process). RabbitMQ keeps reading and discarding after close-ok until the client
// closes, so the same program closes cleanly there.
//
// Repeats ROUNDS times: open a connection, open CHANNELS channels, publish PER_CHANNEL messages of
// BODY_SIZE bytes on each (to the default exchange, routed nowhere) without waiting, then close.
// Any 'error' event, uncaught exception or rejected close is a failure.
// Prints PASS and exits 0, or prints the failure and exits 1. Bounded by a 60 s watchdog.
// Dependencies: `npm ci --prefix interop/clients/node` (amqplib, pinned in package-lock.json).
'use strict';

const amqp = require('amqplib');

const ROUNDS = 5;
const CHANNELS = 16;
const PER_CHANNEL = 64;
const BODY_SIZE = 16 * 1024;
const CLOSE_TIMEOUT_MS = 10000;

function parseArgs(argv) {
  const args = { host: '127.0.0.1', port: 5672 };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--host') args.host = argv[++i];
    else if (argv[i] === '--port') args.port = Number(argv[++i]);
  }
  if (!Number.isInteger(args.port)) throw new Error(`bad port: ${args.port}`);
  return args;
}

const failures = [];

function fail(what, err) {
  failures.push(`${what}: ${err && err.code ? `${err.code} ` : ''}${err && err.message ? err.message : err}`);
}

async function round(host, port, n) {
  const conn = await amqp.connect({
    protocol: 'amqp', hostname: host, port, username: 'guest', password: 'guest', vhost: '/',
    heartbeat: 0,
  }, { clientProperties: { connection_name: `close_burst_${n}` } });
  conn.on('error', (err) => fail(`round ${n}: connection 'error' event`, err));
  const errored = new Promise((_, reject) => conn.on('error', reject));
  const channels = [];
  for (let i = 0; i < CHANNELS; i++) {
    const ch = await conn.createChannel();
    ch.on('error', (err) => fail(`round ${n}: channel ${i} 'error' event`, err));
    channels.push(ch);
  }
  const body = Buffer.alloc(BODY_SIZE, 0x61);
  for (let m = 0; m < PER_CHANNEL; m++) {
    for (const ch of channels) {
      ch.publish('', `close_burst.nowhere.${n}`, body); // false (buffer full) is ignored: no waiting
    }
  }
  const closeEvent = new Promise((resolve) => conn.on('close', resolve));
  // A reset before close-ok leaves amqplib's close() pending forever: stop at the 'error' event.
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no close-ok within ${CLOSE_TIMEOUT_MS} ms`)), CLOSE_TIMEOUT_MS);
  });
  try {
    await Promise.race([conn.close(), timeout, errored]);
    const err = await Promise.race([closeEvent, timeout]);
    if (err) fail(`round ${n}: 'close' event with an error`, err);
  } finally {
    clearTimeout(timer);
  }
}

function report() {
  if (failures.length) {
    for (const f of failures) console.log(`FAIL close_burst: ${f}`);
    return 1;
  }
  console.log(`PASS close_burst: ${ROUNDS} rounds of ${CHANNELS} channels x ${PER_CHANNEL} x ${BODY_SIZE} bytes, then close`);
  return 0;
}

async function main() {
  const watchdog = setTimeout(() => {
    fail('watchdog', 'scenario exceeded 60 s');
    report();
    process.exit(1);
  }, 60000);
  process.on('uncaughtException', (err) => fail('uncaught exception', err));
  process.on('unhandledRejection', (err) => fail('unhandled rejection', err));
  try {
    const { host, port } = parseArgs(process.argv.slice(2));
    for (let n = 0; n < ROUNDS; n++) await round(host, port, n);
    // Late socket errors (a reset arriving after close-ok) surface on the next turns.
    await new Promise((resolve) => setTimeout(resolve, 200));
  } catch (err) {
    fail('scenario', err);
  }
  const code = report();
  clearTimeout(watchdog);
  process.exit(code);
}

main();
