// KafkaJS interop client for busgate's Kafka tests: runs one scenario
// against a Kafka listener (busgate or the broker) and prints one JSON line.
//
// Same command line and result line as the Python interop clients (see
// tests/interop/python/interop_common.py):
//   node client.js BOOTSTRAP PLAIN|SCRAM-SHA-256|SCRAM-SHA-512 USER PASSWORD SCENARIO ARGS...
//   node client.js BOOTSTRAP OAUTHBEARER TOKEN_URL CLIENT_ID SECRET SCENARIO ARGS...
//   node client.js BOOTSTRAP NONE SCENARIO ARGS...
// Scenarios: produce TOPIC N | consume-group TOPIC GROUP N |
//            produce-expect-denied TOPIC | consume-expect-denied TOPIC GROUP
// Exit 0 when the scenario's expectation held, 1 when not, 2 on bad usage.
// BG_INTEROP_TIMEOUT_MS (default 30000) bounds every wait;
// BG_INTEROP_PROPS_FILE names extra KafkaJS settings (key=value lines, KafkaJS's
// own option names: client options such as requestTimeout go to the Kafka
// client, any other to the producer or consumer); BG_INTEROP_LOG_LEVEL
// (error|warn|info|debug, default warn) sets KafkaJS's log level. KafkaJS logs
// to stderr: stdout carries the result line only.
//
// OAUTHBEARER: KafkaJS's oauthBearerProvider runs the OAuth 2.0
// client-credentials grant (HTTP Basic client authentication) with Node's
// fetch. Errors are reported by the Kafka error name KafkaJS carries (e.g.
// TOPIC_AUTHORIZATION_FAILED), or by KafkaJS's error class when there is
// none; then broker_error is the Kafka error of the last failed response
// KafkaJS logged (a denied FindCoordinator: KafkaJSGroupCoordinatorNotFound
// with broker_error GROUP_AUTHORIZATION_FAILED), and an expect-denied
// scenario also succeeds on an authorization error there.
'use strict';

const fs = require('fs');
const path = require('path');
const { Kafka, logLevel, Partitioners } = require('kafkajs');
// KafkaJS's table of Kafka error codes (type, code, message).
const { errorCodes } = require('kafkajs/src/protocol/error');

const CLIENT = 'kafkajs';
const SCENARIOS = ['produce', 'consume-group', 'produce-expect-denied', 'consume-expect-denied'];
const AUTHZ_ERRORS = new Set([
    'TOPIC_AUTHORIZATION_FAILED', 'GROUP_AUTHORIZATION_FAILED', 'CLUSTER_AUTHORIZATION_FAILED',
    'TRANSACTIONAL_ID_AUTHORIZATION_FAILED',
]);
// Error responses KafkaJS logged ({ type, response }), newest last: KafkaJS
// drops some before they reach the caller (a FindCoordinator error becomes
// KafkaJSGroupCoordinatorNotFound), its log still names them.
const brokerErrors = [];

// Options of the Kafka client object (the rest go to the producer/consumer).
const CLIENT_OPTIONS = new Set([
    'connectionTimeout', 'authenticationTimeout', 'reauthenticationThreshold', 'requestTimeout',
    'enforceRequestTimeout',
]);

const timeoutMs = Number(process.env.BG_INTEROP_TIMEOUT_MS || 30000);

class Usage extends Error {}

class Timeout extends Error {
    constructor(what, ms) {
        super(`${what}: no answer within ${ms} ms`);
        this.name = 'Timeout';
    }
}

// Resolves or rejects as p does, or rejects with Timeout after ms.
function bounded(p, what, ms = timeoutMs) {
    let timer;
    const t = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Timeout(what, ms)), ms);
    });
    return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

function parseArgs(argv) {
    if (argv.length < 3) throw new Usage('too few arguments');
    const bootstrap = argv[0];
    const mechanism = argv[1].toUpperCase();
    let rest = argv.slice(2);
    const auth = { mechanism };
    if (mechanism === 'PLAIN' || mechanism === 'SCRAM-SHA-256' || mechanism === 'SCRAM-SHA-512') {
        if (rest.length < 2) throw new Usage(`${mechanism} needs USER PASSWORD`);
        [auth.user, auth.password] = rest;
        rest = rest.slice(2);
    } else if (mechanism === 'OAUTHBEARER') {
        if (rest.length < 3) throw new Usage('OAUTHBEARER needs TOKEN_URL CLIENT_ID SECRET');
        [auth.tokenUrl, auth.clientId, auth.secret] = rest;
        rest = rest.slice(3);
    } else if (mechanism !== 'NONE') {
        throw new Usage(`unknown mechanism ${argv[1]}`);
    }
    if (rest.length === 0) throw new Usage('no scenario');
    return { bootstrap, auth, args: rest };
}

function arg(args, i) {
    if (i >= args.length) throw new Usage(`scenario ${args[0]} needs more arguments`);
    return args[i];
}

function count(args, i) {
    const s = arg(args, i);
    if (!/^[0-9]+$/.test(s)) throw new Usage('N must be a number');
    const n = Number(s);
    if (n < 1) throw new Usage('N must be >= 1');
    return n;
}

// key=value lines of BG_INTEROP_PROPS_FILE; numbers and booleans converted.
function extraProps() {
    const file = process.env.BG_INTEROP_PROPS_FILE;
    const props = {};
    if (!file) return props;
    for (let line of fs.readFileSync(file, 'utf8').split('\n')) {
        line = line.trim();
        const eq = line.indexOf('=');
        if (!line || line.startsWith('#') || eq < 0) continue;
        const v = line.slice(eq + 1).trim();
        props[line.slice(0, eq).trim()] =
            /^[0-9]+$/.test(v) ? Number(v) : v === 'true' ? true : v === 'false' ? false : v;
    }
    return props;
}

// The record value every interop client writes (interop_common.value).
function value(seq) {
    return JSON.stringify({
        seq, client: CLIENT, customer: { email: `user${seq}@example.com` },
        card: { number: '4111111111111111' },
    });
}

// OAuth 2.0 client-credentials grant (RFC 6749 4.4) with HTTP Basic client
// authentication; the token is reused until 30 s before it expires.
function tokenProvider(auth) {
    let token = null;
    let expires = 0;
    return async () => {
        if (token === null || Date.now() > expires - 30000) {
            const basic = Buffer.from(`${encodeURIComponent(auth.clientId)}:` +
                `${encodeURIComponent(auth.secret)}`).toString('base64');
            const resp = await fetch(auth.tokenUrl, {
                method: 'POST',
                headers: {
                    Authorization: `Basic ${basic}`,
                    'Content-Type': 'application/x-www-form-urlencoded',
                },
                body: 'grant_type=client_credentials',
                signal: AbortSignal.timeout(Math.min(timeoutMs, 10000)),
            });
            if (!resp.ok) throw new Error(`token endpoint answered HTTP ${resp.status}`);
            const body = await resp.json();
            token = body.access_token;
            expires = Date.now() + 1000 * Number(body.expires_in || 300);
        }
        return { value: token };
    };
}

// KafkaJS logs through this instead of the console (stdout is the result).
// It also notes the Kafka error of each failed response KafkaJS logs.
function stderrLogCreator() {
    return ({ namespace, level, label, log }) => {
        const { message, ...extra } = log;
        if (level === logLevel.ERROR && namespace === 'Connection' &&
            message.startsWith('Response ') && typeof extra.error === 'string') {
            const known = errorCodes.find((c) => c.message === extra.error);
            if (known) brokerErrors.push({ type: known.type, response: message.slice(9) });
        }
        process.stderr.write(`[kafkajs ${label} ${namespace}] ${message} ` +
            `${JSON.stringify(extra)}\n`);
    };
}

function kafka(bootstrap, auth, props) {
    const conf = {
        clientId: 'busgate-interop-kafkajs',
        brokers: bootstrap.split(','),
        connectionTimeout: Math.min(timeoutMs, 10000),
        authenticationTimeout: Math.min(timeoutMs, 10000),
        requestTimeout: Math.min(timeoutMs, 30000),
        // Retries of one call stay within the time bound.
        retry: { retries: 5, maxRetryTime: Math.min(timeoutMs, 5000) },
        logLevel: logLevel[(process.env.BG_INTEROP_LOG_LEVEL || 'warn').toUpperCase()] ??
            logLevel.WARN,
        logCreator: stderrLogCreator,
    };
    if (auth.mechanism === 'OAUTHBEARER') {
        conf.sasl = { mechanism: 'oauthbearer', oauthBearerProvider: tokenProvider(auth) };
    } else if (auth.mechanism !== 'NONE') {
        conf.sasl = { mechanism: auth.mechanism.toLowerCase(), username: auth.user,
            password: auth.password };
    }
    for (const [k, v] of Object.entries(props)) {
        if (CLIENT_OPTIONS.has(k)) conf[k] = v;
    }
    return new Kafka(conf);
}

function ownProps(props, defaults) {
    const conf = { ...defaults };
    for (const [k, v] of Object.entries(props)) {
        if (!CLIENT_OPTIONS.has(k)) conf[k] = v;
    }
    return conf;
}

// The Kafka error name an error carries (KafkaJS wraps protocol errors in
// retry and crash errors), else the KafkaJS error class.
function errorName(e) {
    for (let c = e, depth = 0; c && depth < 8; c = c.cause || c.originalError, depth++) {
        if (c.type) return c.type;
    }
    return (e && e.name) || 'Error';
}

// Records e as the result's error; when KafkaJS's error carries no Kafka
// error, broker_error and broker_response name the last error response it
// logged. True for an authorization error.
function recordError(out, e) {
    out.error = errorName(e);
    out.message = String((e && e.message) || e);
    const last = brokerErrors[brokerErrors.length - 1];
    if (out.error === (e && e.name) && last) {
        out.broker_error = last.type;
        out.broker_response = last.response;
    }
    return AUTHZ_ERRORS.has(out.error) || AUTHZ_ERRORS.has(out.broker_error);
}

async function quietly(p) {
    try {
        await bounded(p, 'disconnect', Math.min(timeoutMs, 5000));
    } catch (e) {
        process.stderr.write(`disconnect: ${e && e.message}\n`);
    }
}

function producer(k, props) {
    return k.producer(ownProps(props, {
        createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: true,
    }));
}

async function produce(k, props, out, topic, n) {
    out.topic = topic;
    const p = producer(k, props);
    let acked = 0;
    const partitions = new Set();
    try {
        await bounded(p.connect(), 'producer connect');
        const messages = [];
        for (let i = 0; i < n; i++) messages.push({ key: `k-${i}`, value: value(i) });
        const md = await bounded(p.send({ topic, messages, acks: -1 }), 'produce');
        for (const m of md) partitions.add(m.partition);
        // send() resolves only once every record is acknowledged.
        acked = n;
    } finally {
        out.produced = acked;
        out.partitions = [...partitions].sort((a, b) => a - b);
        await quietly(p.disconnect());
    }
    return acked === n;
}

async function produceExpectDenied(k, props, out, topic) {
    out.topic = topic;
    const p = producer(k, props);
    try {
        await bounded(p.connect(), 'producer connect');
        await bounded(p.send({ topic, messages: [{ key: 'k', value: value(0) }], acks: -1 }),
            'produce');
        out.error = null;
        return false;
    } catch (e) {
        return recordError(out, e);
    } finally {
        await quietly(p.disconnect());
    }
}

function consumer(k, props, group) {
    return k.consumer(ownProps(props, {
        // A short fetch wait lets stop and disconnect finish soon.
        groupId: group, sessionTimeout: 10000, readUncommitted: false, maxWaitTimeInMs: 1000,
        // A crashed consumer reports its error here instead of restarting.
        retry: { retries: 2, maxRetryTime: Math.min(timeoutMs, 5000),
            restartOnFailure: async () => false },
    }));
}

// Starts c on topic from the beginning, without auto commit; resolves to
// { crashed } once it runs. onMessage gets each record; a crash rejects
// `crashed` (wrapped: an async function returning it would wait for it).
async function startConsumer(c, topic, onMessage) {
    let crash;
    const crashed = new Promise((_, reject) => { crash = reject; });
    crashed.catch(() => {});
    c.on(c.events.CRASH, (ev) => crash(ev.payload.error));
    await bounded(c.connect(), 'consumer connect');
    await bounded(c.subscribe({ topics: [topic], fromBeginning: true }), 'subscribe');
    await bounded(c.run({
        autoCommit: false,
        eachMessage: async ({ topic: t, partition, message }) => onMessage(t, partition, message),
    }), 'consumer run');
    return { crashed };
}

async function consumeGroup(k, props, out, topic, group, n) {
    out.topic = topic;
    out.group = group;
    const c = consumer(k, props, group);
    const sample = [];
    const next = new Map(); // "topic/partition" -> offset to commit
    let got = 0;
    let reached;
    const done = new Promise((resolve) => { reached = resolve; });
    try {
        const { crashed } = await startConsumer(c, topic, (t, partition, message) => {
            got++;
            if (sample.length < 5) sample.push(message.value.toString('utf8'));
            next.set(`${t}/${partition}`, { topic: t, partition,
                offset: (BigInt(message.offset) + 1n).toString() });
            if (got >= n) reached();
        });
        await bounded(Promise.race([done, crashed]), `consuming ${n} records`);
        if (got) {
            await bounded(c.commitOffsets([...next.values()]), 'commit');
            out.committed = true;
        }
    } finally {
        out.consumed = got;
        out.values = sample;
        await quietly(c.disconnect());
    }
    return got >= n;
}

async function consumeExpectDenied(k, props, out, topic, group) {
    out.topic = topic;
    out.group = group;
    let got = 0;
    const c = consumer(k, props, group);
    try {
        const { crashed } = await startConsumer(c, topic, () => { got++; });
        // Only an error ends this wait early; records alone do not.
        await bounded(crashed, `waiting for a denial of ${topic}`);
        out.error = null;
        return false;
    } catch (e) {
        if (e instanceof Timeout) {
            out.error = null;
            out.message = e.message;
            return false;
        }
        return recordError(out, e);
    } finally {
        out.consumed = got;
        await quietly(c.disconnect());
    }
}

async function run(bootstrap, auth, args, out) {
    const props = extraProps();
    const k = kafka(bootstrap, auth, props);
    switch (args[0]) {
    case 'produce':
        return produce(k, props, out, arg(args, 1), count(args, 2));
    case 'consume-group':
        return consumeGroup(k, props, out, arg(args, 1), arg(args, 2), count(args, 3));
    case 'produce-expect-denied':
        return produceExpectDenied(k, props, out, arg(args, 1));
    case 'consume-expect-denied':
        return consumeExpectDenied(k, props, out, arg(args, 1), arg(args, 2));
    default:
        throw new Usage(`unknown scenario ${args[0]}`);
    }
}

function emit(out, ok) {
    out.ok = ok;
    // Exit only once the line is written (stdout may be a pipe).
    process.stdout.write(JSON.stringify(out) + '\n', () => process.exit(ok ? 0 : 1));
}

async function main() {
    const out = { client: CLIENT };
    let ok = false;
    try {
        const { bootstrap, auth, args } = parseArgs(process.argv.slice(2));
        Object.assign(out, { mechanism: auth.mechanism,
            principal: auth.user !== undefined ? auth.user : auth.clientId || null,
            scenario: args[0] });
        if (!SCENARIOS.includes(args[0])) throw new Usage(`unknown scenario ${args[0]}`);
        ok = Boolean(await run(bootstrap, auth, args, out));
    } catch (e) {
        if (e instanceof Usage) {
            process.stderr.write(`usage: ${path.basename(process.argv[1])} BOOTSTRAP MECHANISM ` +
                `CREDENTIALS... SCENARIO ARGS...\n  scenarios: ${SCENARIOS.join(' | ')}\n` +
                `error: ${e.message}\n`);
            process.exit(2);
        }
        process.stderr.write(`${(e && e.stack) || e}\n`);
        if (out.error === undefined) recordError(out, e);
        ok = false;
    }
    emit(out, ok);
}

main();
