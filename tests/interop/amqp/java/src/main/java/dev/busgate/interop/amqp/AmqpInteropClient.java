package dev.busgate.interop.amqp;

import com.rabbitmq.client.AMQP;
import com.rabbitmq.client.Channel;
import com.rabbitmq.client.Connection;
import com.rabbitmq.client.ConnectionFactory;
import com.rabbitmq.client.Delivery;
import com.rabbitmq.client.ShutdownSignalException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * RabbitMQ Java client interop program for busgate's AMQP tests: runs one
 * scenario against an AMQP 0-9-1 server (busgate or RabbitMQ) and prints one
 * JSON line.
 *
 * <pre>
 *   java -jar busgate-interop-amqp-java.jar HOST PORT USER SCENARIO ARGS...
 *     roundtrip EXCHANGE QUEUE N   direct exchange + queue + binding, N publishes
 *                                  with publisher confirms, consume the N back
 *                                  (manual acks), delete both
 *     publish-denied EXCHANGE      publish on a confirm channel; report the close
 *     consume-denied QUEUE         basicConsume; report the close
 * </pre>
 *
 * The password (for busgate: the token) comes from BG_AMQP_PASSWORD.
 * BG_INTEROP_TIMEOUT_MS (default 30000) bounds every wait and the whole run.
 * Exit 0 when the scenario ran to its end (the test judges the reported
 * values), 1 on an unexpected error or timeout, 2 on bad usage.
 */
public final class AmqpInteropClient {
    private static final String CLIENT = "java";
    private static final long TIMEOUT_MS = Long.parseLong(
            System.getenv().getOrDefault("BG_INTEROP_TIMEOUT_MS", "30000"));

    private AmqpInteropClient() {}

    public static void main(String[] args) {
        if (args.length < 4) {
            System.err.println("usage: HOST PORT USER SCENARIO ARGS...");
            System.exit(2);
        }
        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(TIMEOUT_MS + 5000);
                emit(Map.of("ok", false, "error", "timeout"), 1);
            } catch (InterruptedException e) {
                // the run ended first
            }
        });
        watchdog.setDaemon(true);
        watchdog.start();
        String scenario = args[3];
        Map<String, Object> res = new LinkedHashMap<>();
        res.put("scenario", scenario);
        try (Connection conn = connect(args[0], Integer.parseInt(args[1]), args[2])) {
            if (scenario.equals("roundtrip") && args.length == 7) {
                roundtrip(conn, args[4], args[5], Integer.parseInt(args[6]), res);
            } else if (scenario.equals("publish-denied") && args.length == 5) {
                publishDenied(conn, args[4], res);
            } else if (scenario.equals("consume-denied") && args.length == 5) {
                consumeDenied(conn, args[4], res);
            } else {
                res.put("ok", false);
                res.put("error", "unknown scenario or wrong arguments");
                emit(res, 2);
            }
        } catch (Exception e) {
            res.put("ok", false);
            res.put("error", e.toString());
            emit(res, 1);
        }
        res.put("ok", true);
        emit(res, 0);
    }

    private static Connection connect(String host, int port, String user) throws Exception {
        ConnectionFactory f = new ConnectionFactory();
        f.setHost(host);
        f.setPort(port);
        f.setUsername(user);
        f.setPassword(System.getenv().getOrDefault("BG_AMQP_PASSWORD", ""));
        f.setVirtualHost("/");
        f.setConnectionTimeout((int) TIMEOUT_MS);
        f.setHandshakeTimeout((int) TIMEOUT_MS);
        f.setChannelRpcTimeout((int) TIMEOUT_MS);
        f.setAutomaticRecoveryEnabled(false);
        return f.newConnection("busgate-interop-java");
    }

    private static void roundtrip(Connection conn, String exchange, String queue, int n,
                                  Map<String, Object> res) throws Exception {
        Channel ch = conn.createChannel();
        ch.exchangeDeclare(exchange, "direct", false, false, null);
        ch.queueDeclare(queue, false, false, false, null);
        ch.queueBind(queue, exchange, "rk");
        ch.confirmSelect();
        AtomicInteger acked = new AtomicInteger(), nacked = new AtomicInteger();
        ch.addConfirmListener((tag, multiple) -> acked.addAndGet(confirmed(tag, multiple, acked, nacked)),
                (tag, multiple) -> nacked.addAndGet(confirmed(tag, multiple, acked, nacked)));
        for (int i = 0; i < n; i++) {
            AMQP.BasicProperties props = new AMQP.BasicProperties.Builder()
                    .contentType("application/json").headers(Map.of("seq", i)).build();
            String body = "{\"seq\":" + i + ",\"client\":\"" + CLIENT + "\"}";
            ch.basicPublish(exchange, "rk", props, body.getBytes(StandardCharsets.UTF_8));
        }
        ch.waitForConfirms(TIMEOUT_MS);
        List<int[]> got = Collections.synchronizedList(new ArrayList<>());
        CountDownLatch all = new CountDownLatch(n);
        ch.basicQos(50);
        String tag = ch.basicConsume(queue, false, (ctag, d) -> {
            got.add(new int[] {bodySeq(d), ((Number) d.getProperties().getHeaders().get("seq")).intValue()});
            ch.basicAck(d.getEnvelope().getDeliveryTag(), false);
            all.countDown();
        }, ctag -> { });
        all.await(TIMEOUT_MS, TimeUnit.MILLISECONDS);
        ch.basicCancel(tag);
        boolean inOrder = got.size() == n;
        for (int i = 0; i < got.size(); i++) {
            inOrder &= got.get(i)[0] == i && got.get(i)[1] == i;
        }
        ch.queueDelete(queue);
        ch.exchangeDelete(exchange);
        ch.close();
        res.put("published", n);
        res.put("confirmed", acked.get());
        res.put("nacked", nacked.get());
        res.put("consumed", got.size());
        res.put("in_order", inOrder);
    }

    /** Publishes newly confirmed by a (possibly multiple) ack/nack for tag. */
    private static int confirmed(long tag, boolean multiple, AtomicInteger acked, AtomicInteger nacked) {
        return multiple ? (int) tag - acked.get() - nacked.get() : 1;
    }

    private static int bodySeq(Delivery d) {
        String s = new String(d.getBody(), StandardCharsets.UTF_8);
        int a = s.indexOf("\"seq\":") + 6;
        int b = s.indexOf(',', a);
        return Integer.parseInt(s.substring(a, b));
    }

    /** Channel whose server-initiated close is delivered to the future. */
    private static Channel watched(Connection conn, CompletableFuture<ShutdownSignalException> closed)
            throws Exception {
        Channel ch = conn.createChannel();
        ch.addShutdownListener(closed::complete);
        return ch;
    }

    private static void publishDenied(Connection conn, String exchange, Map<String, Object> res)
            throws Exception {
        CompletableFuture<ShutdownSignalException> closed = new CompletableFuture<>();
        Channel ch = watched(conn, closed);
        ch.confirmSelect();
        ch.basicPublish(exchange, "rk", null, "must not arrive".getBytes(StandardCharsets.UTF_8));
        boolean confirmed;
        try {
            confirmed = ch.waitForConfirms(TIMEOUT_MS);
        } catch (ShutdownSignalException e) {
            confirmed = false;
        }
        res.put("confirmed", confirmed);
        res.put("closed", describe(closed.get(TIMEOUT_MS, TimeUnit.MILLISECONDS)));
        res.put("connection_alive", connectionAlive(conn));
    }

    private static void consumeDenied(Connection conn, String queue, Map<String, Object> res)
            throws Exception {
        CompletableFuture<ShutdownSignalException> closed = new CompletableFuture<>();
        Channel ch = watched(conn, closed);
        boolean consumed;
        try {
            ch.basicConsume(queue, true, (t, d) -> { }, t -> { });
            consumed = true;
        } catch (java.io.IOException e) {
            consumed = false;
        }
        res.put("consume_ok", consumed);
        res.put("closed", describe(closed.get(TIMEOUT_MS, TimeUnit.MILLISECONDS)));
        res.put("connection_alive", connectionAlive(conn));
    }

    /** The server's channel.close (code, text, class/method ids), or the signal's text. */
    private static Object describe(ShutdownSignalException e) {
        Map<String, Object> m = new LinkedHashMap<>();
        if (e.getReason() instanceof AMQP.Channel.Close) {
            AMQP.Channel.Close c = (AMQP.Channel.Close) e.getReason();
            m.put("code", c.getReplyCode());
            m.put("text", c.getReplyText());
            m.put("class_id", c.getClassId());
            m.put("method_id", c.getMethodId());
        } else {
            m.put("code", null);
            m.put("text", String.valueOf(e.getMessage()));
        }
        m.put("initiated_by_server", !e.isInitiatedByApplication());
        return m;
    }

    /** A fresh channel and a basic.qos round trip: the connection survived. */
    private static boolean connectionAlive(Connection conn) throws Exception {
        Channel ch = conn.createChannel();
        ch.basicQos(1);
        ch.close();
        return conn.isOpen();
    }

    private static synchronized void emit(Map<String, Object> res, int code) {
        Map<String, Object> all = new LinkedHashMap<>();
        all.put("client", CLIENT);
        all.putAll(res);
        System.out.println(json(all));
        System.out.flush();
        Runtime.getRuntime().halt(code);
    }

    private static String json(Object v) {
        if (v == null) {
            return "null";
        }
        if (v instanceof Map) {
            StringBuilder sb = new StringBuilder("{");
            for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
                sb.append(sb.length() > 1 ? "," : "").append(json(e.getKey().toString()))
                        .append(':').append(json(e.getValue()));
            }
            return sb.append('}').toString();
        }
        if (v instanceof Number || v instanceof Boolean) {
            return v.toString();
        }
        StringBuilder sb = new StringBuilder("\"");
        for (char c : v.toString().toCharArray()) {
            if (c == '"' || c == '\\') {
                sb.append('\\').append(c);
            } else if (c < 0x20) {
                sb.append(String.format("\\u%04x", (int) c));
            } else {
                sb.append(c);
            }
        }
        return sb.append('"').toString();
    }
}
