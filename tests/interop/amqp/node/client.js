// amqplib interop client for busgate's AMQP tests: runs one scenario against
// an AMQP 0-9-1 server (busgate or RabbitMQ) and prints one JSON line.
//
//   node client.js HOST PORT USER SCENARIO ARGS...
//     roundtrip EXCHANGE QUEUE N   declare a direct exchange and a queue, bind
//                                  them, publish N with publisher confirms,
//                                  consume the N back (manual acks), delete both
//     publish-denied EXCHANGE      publish on a confirm channel; report the
//                                  channel close the server sends
//     consume-denied QUEUE         basic.consume; report the channel close
//
// The password (for busgate: the token) comes from BG_AMQP_PASSWORD so it is
// not on the command line. BG_INTEROP_TIMEOUT_MS (default 30000) bounds the
// whole run. Exit 0 when the scenario ran to its end (the test judges the
// reported values), 1 on an unexpected error or timeout, 2 on bad usage.
'use strict';

const amqp = require('amqplib');

const CLIENT = 'amqplib';
const timeoutMs = Number(process.env.BG_INTEROP_TIMEOUT_MS || 30000);

function emit(result, code) {
    process.stdout.write(JSON.stringify({ client: CLIENT, ...result }) + '\n');
    process.exit(code);
}

// amqplib reports a server close as 'Channel closed by server: 403
// (ACCESS-REFUSED) with message "TEXT"' plus code/classId/methodId fields.
function describeClose(err) {
    if (!err) return null;
    const m = /with message "([\s\S]*)"$/.exec(err.message || '');
    return {
        code: err.code === undefined ? null : err.code,
        text: m ? m[1] : String(err.message),
        class_id: err.classId === undefined ? null : err.classId,
        method_id: err.methodId === undefined ? null : err.methodId,
    };
}

function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

// Waits (bounded) for the channel's 'error' event to have delivered the close.
async function awaitClose(state) {
    for (let i = 0; i < 100 && !state.err; i++) await sleep(20);
    return describeClose(state.err);
}

// A fresh channel on the same connection and a basic.qos round trip: the
// connection survived the channel's refusal.
async function connectionAlive(conn) {
    const ch = await conn.createChannel();
    await ch.prefetch(1);
    await ch.close();
    return true;
}

async function roundtrip(conn, exchange, queue, n) {
    const ch = await conn.createConfirmChannel();
    await ch.assertExchange(exchange, 'direct', { durable: false, autoDelete: false });
    await ch.assertQueue(queue, { durable: false, autoDelete: false });
    await ch.bindQueue(queue, exchange, 'rk');
    let acked = 0;
    let nacked = 0;
    for (let i = 0; i < n; i++) {
        const body = Buffer.from(JSON.stringify({ seq: i, client: CLIENT }));
        ch.publish(exchange, 'rk', body, { headers: { seq: i } }, (err) => {
            if (err) nacked++;
            else acked++;
        });
    }
    await ch.waitForConfirms();
    const got = [];
    await ch.prefetch(50);
    let resolveDone;
    const done = new Promise((resolve) => { resolveDone = resolve; });
    const consumeOk = ch.consume(queue, (msg) => {
        if (msg === null) return; // server-side cancel
        got.push({ seq: JSON.parse(msg.content.toString()).seq, hdr: msg.properties.headers.seq });
        ch.ack(msg);
        if (got.length === n) resolveDone();
    }, { noAck: false });
    const [ok] = await Promise.all([consumeOk, done]);
    await ch.cancel(ok.consumerTag);
    const inOrder = got.every((g, i) => g.seq === i && g.hdr === i);
    await ch.deleteQueue(queue);
    await ch.deleteExchange(exchange);
    await ch.close();
    return { published: n, confirmed: acked, nacked, consumed: got.length, in_order: inOrder };
}

async function publishDenied(conn, exchange) {
    const ch = await conn.createConfirmChannel();
    const state = { err: null };
    ch.on('error', (e) => { state.err = e; });
    ch.publish(exchange, 'rk', Buffer.from('must not arrive'));
    let confirmed = true;
    try {
        await ch.waitForConfirms();
    } catch (e) {
        confirmed = false;
    }
    const closed = await awaitClose(state);
    return { confirmed, closed, connection_alive: await connectionAlive(conn) };
}

async function consumeDenied(conn, queue) {
    const ch = await conn.createChannel();
    const state = { err: null };
    ch.on('error', (e) => { state.err = e; });
    let consumed = true;
    try {
        await ch.consume(queue, () => {}, { noAck: true });
    } catch (e) {
        consumed = false;
    }
    const closed = await awaitClose(state);
    return { consume_ok: consumed, closed, connection_alive: await connectionAlive(conn) };
}

async function main(argv) {
    if (argv.length < 4) emit({ ok: false, error: 'usage: HOST PORT USER SCENARIO ARGS...' }, 2);
    const [host, port, user, scenario, ...args] = argv;
    const result = { scenario, args };
    const timer = setTimeout(() => emit({ ...result, ok: false, error: `timeout after ${timeoutMs} ms` }, 1),
        timeoutMs);
    const conn = await amqp.connect({
        protocol: 'amqp', hostname: host, port: Number(port), username: user,
        password: process.env.BG_AMQP_PASSWORD || '', vhost: '/', heartbeat: 30,
    });
    conn.on('error', () => {}); // reported through the scenario's own awaits
    let out;
    if (scenario === 'roundtrip' && args.length === 3) {
        out = await roundtrip(conn, args[0], args[1], Number(args[2]));
    } else if (scenario === 'publish-denied' && args.length === 1) {
        out = await publishDenied(conn, args[0]);
    } else if (scenario === 'consume-denied' && args.length === 1) {
        out = await consumeDenied(conn, args[0]);
    } else {
        emit({ ...result, ok: false, error: 'unknown scenario or wrong arguments' }, 2);
    }
    await conn.close();
    clearTimeout(timer);
    emit({ ...result, ...out, ok: true }, 0);
}

main(process.argv.slice(2)).catch((e) => emit({ ok: false, error: String(e && e.message || e) }, 1));
