package dev.busgate.interop;

import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

import org.apache.kafka.clients.CommonClientConfigs;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AbortTransactionSpec;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.DescribeClusterOptions;
import org.apache.kafka.clients.admin.DescribeTopicsOptions;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.NewPartitionReassignment;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.ProducerState;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.ShareGroupDescription;
import org.apache.kafka.clients.admin.ShareMemberDescription;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.KafkaShareConsumer;
import org.apache.kafka.clients.consumer.SubscriptionPattern;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.ElectionType;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.config.SaslConfigs;
import org.apache.kafka.common.errors.ApiException;
import org.apache.kafka.common.errors.AuthorizationException;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * One interop scenario with the Java kafka-clients, for busgate's tests.
 *
 * <pre>
 * InteropClient BOOTSTRAP PLAIN|SCRAM-SHA-256|SCRAM-SHA-512 USER PASSWORD SCENARIO ARGS...
 * InteropClient BOOTSTRAP OAUTHBEARER TOKEN_URL CLIENT_ID SECRET SCENARIO ARGS...
 * InteropClient BOOTSTRAP NONE SCENARIO ARGS...            (PLAINTEXT, for checks)
 * </pre>
 *
 * Prints exactly one JSON line on stdout ({"client":"java","scenario":...,"ok":...})
 * and exits 0 when the scenario's expectation held, 1 otherwise, 2 on bad usage.
 * Environment: BG_INTEROP_TIMEOUT_MS (default 30000) bounds every wait;
 * BG_INTEROP_PROPS_FILE names extra client properties (e.g. compression.type).
 */
public final class InteropClient {
    private static final String SCENARIOS = "produce TOPIC N | consume-group TOPIC GROUP N"
            + " | produce-expect-denied TOPIC | consume-expect-denied TOPIC GROUP"
            + " | consume-pattern-expect-denied REGEX GROUP"
            + " | admin-list-topics | admin-create-topic T | admin-delete-topic T"
            + " | admin-delete-topic-expect-denied T | admin-describe-topic T"
            + " | admin-describe-group[-expect-denied] G"
            + " | txn-produce TXNID TOPIC N"
            + " | txn-produce-expect-denied TXNID TOPIC | idempotent-produce TOPIC N"
            + " | txn-hang TXNID TOPIC | admin-abort-hanging[-expect-denied] TOPIC"
            + " | admin-create-partitions[-expect-denied] T N"
            + " | admin-alter-topic-config[-expect-denied] T KEY VALUE"
            + " | admin-describe-topic-config[-expect-denied] T"
            + " | admin-delete-records-expect-denied T OFFSET | admin-delete-group-expect-denied G"
            + " | admin-create-acls-expect-denied TYPE,NAME,PRINCIPAL..."
            + " | admin-reassign-expect-denied T | admin-elect-leaders-expect-denied T"
            + " | admin-set-group-config G KEY VALUE | admin-describe-share-group[-expect-denied] G"
            + " | share-consume TOPIC GROUP N | share-consume-expect-denied TOPIC GROUP"
            + " | suite SCENARIO ARGS... [-- SCENARIO ARGS...]...";

    private final Properties base = new Properties();
    private final long timeoutMs;
    private Map<String, Object> out = new LinkedHashMap<>();

    private InteropClient(long timeoutMs) {
        this.timeoutMs = timeoutMs;
    }

    public static void main(String[] args) {
        long timeout = Long.parseLong(System.getenv().getOrDefault("BG_INTEROP_TIMEOUT_MS", "30000"));
        InteropClient c = new InteropClient(timeout);
        int rest;
        try {
            rest = c.configure(args);
        } catch (IllegalArgumentException | IOException e) {
            System.err.println("usage: InteropClient BOOTSTRAP MECHANISM CREDENTIALS... SCENARIO ARGS...");
            System.err.println("  MECHANISM: PLAIN|SCRAM-SHA-256|SCRAM-SHA-512 USER PASSWORD"
                    + " | OAUTHBEARER TOKEN_URL CLIENT_ID SECRET | NONE");
            System.err.println("  SCENARIO: " + SCENARIOS);
            System.err.println("error: " + e.getMessage());
            System.exit(2);
            return;
        }
        String[] sargs = Arrays.copyOfRange(args, rest, args.length);
        boolean ok;
        try {
            ok = c.run(sargs);
        } catch (IllegalArgumentException e) {
            System.err.println("error: " + e.getMessage() + "\n  SCENARIO: " + SCENARIOS);
            System.exit(2);
            return;
        } catch (Exception e) {
            c.recordError(e);
            ok = false;
        }
        c.out.put("ok", ok);
        System.out.println(Json.object(c.out));
        System.out.flush();
        // Client threads (e.g. the OAuth login refresher) must not keep the JVM alive.
        System.exit(ok ? 0 : 1);
    }

    /** Fills the common client properties; returns the index of SCENARIO in args. */
    private int configure(String[] args) throws IOException {
        if (args.length < 3) {
            throw new IllegalArgumentException("too few arguments");
        }
        base.put(CommonClientConfigs.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        base.put(CommonClientConfigs.CLIENT_ID_CONFIG, "busgate-interop-java");
        String mech = args[1].toUpperCase();
        out.put("client", "java");
        out.put("mechanism", mech);
        int i = 2;
        switch (mech) {
            case "NONE":
                base.put(CommonClientConfigs.SECURITY_PROTOCOL_CONFIG, "PLAINTEXT");
                break;
            case "PLAIN":
            case "SCRAM-SHA-256":
            case "SCRAM-SHA-512":
                need(args, i + 2);
                saslPassword(mech, args[i], args[i + 1]);
                i += 2;
                break;
            case "OAUTHBEARER":
                need(args, i + 3);
                saslOAuth(args[i], args[i + 1], args[i + 2]);
                i += 3;
                break;
            default:
                throw new IllegalArgumentException("unknown mechanism " + args[1]);
        }
        need(args, i + 1);
        String extra = System.getenv("BG_INTEROP_PROPS_FILE");
        if (extra != null && !extra.isEmpty()) {
            try (InputStream in = new FileInputStream(extra)) {
                base.load(in);
            }
        }
        return i;
    }

    private static void need(String[] args, int n) {
        if (args.length < n) {
            throw new IllegalArgumentException("too few arguments");
        }
    }

    private static String jaasQuote(String s) {
        return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }

    private void saslPassword(String mech, String user, String password) {
        String module = mech.equals("PLAIN")
                ? "org.apache.kafka.common.security.plain.PlainLoginModule"
                : "org.apache.kafka.common.security.scram.ScramLoginModule";
        base.put(CommonClientConfigs.SECURITY_PROTOCOL_CONFIG, "SASL_PLAINTEXT");
        base.put(SaslConfigs.SASL_MECHANISM, mech);
        base.put(SaslConfigs.SASL_JAAS_CONFIG, module + " required username=" + jaasQuote(user)
                + " password=" + jaasQuote(password) + ";");
        out.put("principal", user);
    }

    private void saslOAuth(String tokenUrl, String clientId, String secret) {
        // Kafka 4.0+: the client refuses token endpoints not listed here.
        String allowed = System.getProperty("org.apache.kafka.sasl.oauthbearer.allowed.urls");
        if (allowed == null || allowed.isEmpty()) {
            System.setProperty("org.apache.kafka.sasl.oauthbearer.allowed.urls", tokenUrl);
        }
        base.put(CommonClientConfigs.SECURITY_PROTOCOL_CONFIG, "SASL_PLAINTEXT");
        base.put(SaslConfigs.SASL_MECHANISM, "OAUTHBEARER");
        base.put(SaslConfigs.SASL_LOGIN_CALLBACK_HANDLER_CLASS,
                "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler");
        base.put(SaslConfigs.SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL, tokenUrl);
        // Kafka 4.1+ (KIP-1139) names the client credentials as configs; the
        // JAAS options clientId/clientSecret are the deprecated spelling.
        base.put("sasl.oauthbearer.client.credentials.client.id", clientId);
        base.put("sasl.oauthbearer.client.credentials.client.secret", secret);
        base.put(SaslConfigs.SASL_JAAS_CONFIG,
                "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;");
        out.put("principal", clientId);
    }

    private boolean run(String[] a) throws Exception {
        if (a.length == 0) {
            throw new IllegalArgumentException("no scenario");
        }
        out.put("scenario", a[0]);
        switch (a[0]) {
            case "produce":
                return produce(arg(a, 1), count(a, 2), false, null);
            case "idempotent-produce":
                return produce(arg(a, 1), count(a, 2), true, null);
            case "txn-produce":
                return produce(arg(a, 2), count(a, 3), true, arg(a, 1));
            case "txn-produce-expect-denied":
                return txnProduceExpectDenied(arg(a, 1), arg(a, 2));
            case "txn-hang":
                return txnHang(arg(a, 1), arg(a, 2));
            case "admin-abort-hanging":
                return adminAbortHanging(arg(a, 1), false);
            case "admin-abort-hanging-expect-denied":
                return adminAbortHanging(arg(a, 1), true);
            case "suite":
                return suite(Arrays.copyOfRange(a, 1, a.length));
            case "consume-group":
                return consumeGroup(arg(a, 1), arg(a, 2), count(a, 3));
            case "produce-expect-denied":
                return produceExpectDenied(arg(a, 1));
            case "consume-expect-denied":
                return consumeExpectDenied(arg(a, 1), arg(a, 2));
            case "consume-pattern-expect-denied":
                return consumePatternExpectDenied(arg(a, 1), arg(a, 2));
            case "admin-list-topics":
                return adminListTopics();
            case "admin-create-topic":
                return adminCreateTopic(arg(a, 1));
            case "admin-delete-topic":
                return adminDeleteTopic(arg(a, 1), false);
            case "admin-delete-topic-expect-denied":
                return adminDeleteTopic(arg(a, 1), true);
            case "admin-describe-topic":
                return adminDescribeTopic(arg(a, 1));
            case "admin-describe-group":
                return adminDescribeGroup(arg(a, 1), false);
            case "admin-describe-group-expect-denied":
                return adminDescribeGroup(arg(a, 1), true);
            case "admin-describe-share-group":
                return adminDescribeShareGroup(arg(a, 1), false);
            case "admin-describe-share-group-expect-denied":
                return adminDescribeShareGroup(arg(a, 1), true);
            case "admin-create-partitions":
                return adminCreatePartitions(arg(a, 1), count(a, 2), false);
            case "admin-create-partitions-expect-denied":
                return adminCreatePartitions(arg(a, 1), count(a, 2), true);
            case "admin-alter-topic-config":
                return adminAlterTopicConfig(arg(a, 1), arg(a, 2), arg(a, 3), false);
            case "admin-alter-topic-config-expect-denied":
                return adminAlterTopicConfig(arg(a, 1), arg(a, 2), arg(a, 3), true);
            case "admin-describe-topic-config":
                return adminDescribeTopicConfig(arg(a, 1), false);
            case "admin-describe-topic-config-expect-denied":
                return adminDescribeTopicConfig(arg(a, 1), true);
            case "admin-delete-records-expect-denied":
                return adminDeleteRecords(arg(a, 1), count(a, 2), true);
            case "admin-delete-group-expect-denied":
                return adminDeleteGroup(arg(a, 1), true);
            case "admin-create-acls-expect-denied":
                arg(a, 1);
                return adminCreateAcls(Arrays.asList(a).subList(1, a.length), true);
            case "admin-reassign-expect-denied":
                return adminReassign(arg(a, 1), true);
            case "admin-elect-leaders-expect-denied":
                return adminElectLeaders(arg(a, 1), true);
            case "admin-set-group-config":
                return adminSetGroupConfig(arg(a, 1), arg(a, 2), arg(a, 3));
            case "share-consume":
                return shareConsume(arg(a, 1), arg(a, 2), count(a, 3));
            case "share-consume-expect-denied":
                return shareConsumeExpectDenied(arg(a, 1), arg(a, 2));
            default:
                throw new IllegalArgumentException("unknown scenario " + a[0]);
        }
    }

    /**
     * Runs several scenarios, separated by "--", in this one JVM (the JVM start
     * dominates a short scenario's time). Each step's result object goes to
     * "steps"; the suite stops at the first step whose expectation failed.
     */
    private boolean suite(String[] a) throws Exception {
        List<List<String>> steps = new ArrayList<>();
        steps.add(new ArrayList<>());
        for (String s : a) {
            if (s.equals("--")) {
                steps.add(new ArrayList<>());
            } else {
                steps.get(steps.size() - 1).add(s);
            }
        }
        for (List<String> step : steps) {
            if (step.isEmpty() || step.get(0).equals("suite")) {
                throw new IllegalArgumentException("suite: empty or nested step");
            }
        }
        Map<String, Object> suiteOut = out;
        List<Map<String, Object>> results = new ArrayList<>();
        suiteOut.put("steps", results);
        boolean ok = true;
        for (List<String> step : steps) {
            out = new LinkedHashMap<>();
            results.add(out);
            boolean stepOk;
            try {
                stepOk = run(step.toArray(new String[0]));
            } catch (IllegalArgumentException e) {
                throw e;
            } catch (Exception e) {
                recordError(e);
                stepOk = false;
            }
            out.put("ok", stepOk);
            if (!stepOk) {
                ok = false;
                break;
            }
        }
        out = suiteOut;
        return ok;
    }

    private static String arg(String[] a, int i) {
        if (i >= a.length) {
            throw new IllegalArgumentException("scenario " + a[0] + " needs more arguments");
        }
        return a[i];
    }

    private static int count(String[] a, int i) {
        int n = Integer.parseInt(arg(a, i));
        if (n < 1) {
            throw new IllegalArgumentException("N must be >= 1");
        }
        return n;
    }

    /** The record value every client in tests/interop writes: JSON with PII-like fields. */
    static String value(int seq) {
        return "{\"seq\":" + seq + ",\"client\":\"java\",\"customer\":{\"email\":\"user" + seq
                + "@example.com\"},\"card\":{\"number\":\"4111111111111111\"}}";
    }

    private Properties producerProps() {
        Properties p = new Properties();
        p.putAll(base);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.putIfAbsent(ProducerConfig.ACKS_CONFIG, "all");
        p.putIfAbsent(ProducerConfig.MAX_BLOCK_MS_CONFIG, String.valueOf(timeoutMs));
        p.putIfAbsent(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, String.valueOf(Math.min(timeoutMs, 15000)));
        p.putIfAbsent(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG,
                String.valueOf(Math.max(timeoutMs, Math.min(timeoutMs, 15000) + 1000)));
        p.putIfAbsent(ProducerConfig.LINGER_MS_CONFIG, "5");
        return p;
    }

    private boolean produce(String topic, int n, boolean idempotent, String txnId) throws Exception {
        Properties p = producerProps();
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, String.valueOf(idempotent));
        if (txnId != null) {
            p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txnId);
            out.put("transactional_id", txnId);
        }
        out.put("topic", topic);
        int acked = 0;
        TreeSet<Integer> partitions = new TreeSet<>();
        try (KafkaProducer<String, String> prod = new KafkaProducer<>(p)) {
            if (txnId != null) {
                prod.initTransactions();
                prod.beginTransaction();
            }
            List<Future<RecordMetadata>> fs = new ArrayList<>(n);
            for (int i = 0; i < n; i++) {
                fs.add(prod.send(new ProducerRecord<>(topic, "k-" + i, value(i))));
            }
            if (txnId != null) {
                prod.commitTransaction();
            } else {
                prod.flush();
            }
            for (Future<RecordMetadata> f : fs) {
                RecordMetadata md = f.get(timeoutMs, TimeUnit.MILLISECONDS);
                partitions.add(md.partition());
                acked++;
            }
        } finally {
            out.put("produced", acked);
            out.put("partitions", new ArrayList<>(partitions));
        }
        return acked == n;
    }

    /** initTransactions() with a transactional id the principal may not use must fail. */
    private boolean txnProduceExpectDenied(String txnId, String topic) {
        Properties p = producerProps();
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txnId);
        out.put("transactional_id", txnId);
        out.put("topic", topic);
        try (KafkaProducer<String, String> prod = new KafkaProducer<>(p)) {
            prod.initTransactions();
            prod.beginTransaction();
            prod.send(new ProducerRecord<>(topic, "k", value(0))).get(timeoutMs, TimeUnit.MILLISECONDS);
            prod.commitTransaction();
            out.put("error", null);
            return false;
        } catch (Exception e) {
            return expectDenied(e);
        }
    }

    /**
     * Begins a transaction, writes one record to partition 0 and leaves the
     * transaction open: the producer is never closed and the JVM exits
     * after the result line (a "hanging" transaction, KIP-664).
     */
    private boolean txnHang(String txnId, String topic) throws Exception {
        Properties p = producerProps();
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txnId);
        p.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, "600000");
        out.put("transactional_id", txnId);
        out.put("topic", topic);
        KafkaProducer<String, String> prod = new KafkaProducer<>(p);
        prod.initTransactions();
        prod.beginTransaction();
        RecordMetadata md = prod.send(new ProducerRecord<>(topic, 0, "k", value(0)))
                .get(timeoutMs, TimeUnit.MILLISECONDS);
        out.put("offset", md.offset());
        return true;
    }

    /**
     * Finds the open transaction on partition 0 of topic (DescribeProducers)
     * and aborts it with the AdminClient (WriteTxnMarkers), as
     * kafka-transactions.sh abort does; then counts the open transactions left.
     */
    private boolean adminAbortHanging(String topic, boolean expectDenied) throws Exception {
        out.put("topic", topic);
        TopicPartition tp = new TopicPartition(topic, 0);
        return withAdmin(expectDenied, admin -> {
            List<ProducerState> open = openTransactions(admin, tp);
            if (open.isEmpty()) {
                throw new IllegalStateException("no open transaction on " + tp);
            }
            ProducerState st = open.get(open.size() - 1);
            out.put("producer_id", st.producerId());
            admin.abortTransaction(new AbortTransactionSpec(tp, st.producerId(),
                    (short) st.producerEpoch(), st.coordinatorEpoch().orElse(-1)))
                    .all().get(timeoutMs, TimeUnit.MILLISECONDS);
            out.put("open_after", openTransactions(admin, tp).size());
            out.put("error", null);
        });
    }

    private List<ProducerState> openTransactions(Admin admin, TopicPartition tp) throws Exception {
        List<ProducerState> open = new ArrayList<>();
        for (ProducerState st : admin.describeProducers(Collections.singletonList(tp))
                .partitionResult(tp).get(timeoutMs, TimeUnit.MILLISECONDS).activeProducers()) {
            if (st.currentTransactionStartOffset().isPresent()) {
                open.add(st);
            }
        }
        return open;
    }

    private Properties consumerProps(String group) {
        Properties p = new Properties();
        p.putAll(base);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.putIfAbsent(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.putIfAbsent(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        // The KIP-848 protocol (group.protocol=consumer) takes the session
        // timeout from the broker and refuses the client setting.
        if (!"consumer".equalsIgnoreCase(String.valueOf(p.get(ConsumerConfig.GROUP_PROTOCOL_CONFIG)))) {
            p.putIfAbsent(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
        }
        p.putIfAbsent(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, String.valueOf(timeoutMs));
        return p;
    }

    private boolean consumeGroup(String topic, String group, int n) {
        out.put("topic", topic);
        out.put("group", group);
        int got = 0;
        List<String> sample = new ArrayList<>();
        long deadline = System.currentTimeMillis() + timeoutMs;
        try (KafkaConsumer<String, String> cons = new KafkaConsumer<>(consumerProps(group))) {
            cons.subscribe(Collections.singletonList(topic));
            while (got < n && System.currentTimeMillis() < deadline) {
                ConsumerRecords<String, String> recs = cons.poll(Duration.ofMillis(500));
                for (ConsumerRecord<String, String> r : recs) {
                    if (sample.size() < 5) {
                        sample.add(r.value());
                    }
                    got++;
                }
            }
            if (got > 0) {
                cons.commitSync(Duration.ofMillis(timeoutMs));
                out.put("committed", true);
            }
        } finally {
            out.put("consumed", got);
            out.put("values", sample);
        }
        return got >= n;
    }

    /** A group config (e.g. share.auto.offset.reset for a share group, KIP-932). */
    private boolean adminSetGroupConfig(String group, String key, String value) throws Exception {
        out.put("group", group);
        try (Admin admin = Admin.create(adminProps())) {
            ConfigResource r = new ConfigResource(ConfigResource.Type.GROUP, group);
            admin.incrementalAlterConfigs(Collections.singletonMap(r, Collections.singletonList(
                            new AlterConfigOp(new ConfigEntry(key, value), AlterConfigOp.OpType.SET))))
                    .all().get(timeoutMs, TimeUnit.MILLISECONDS);
            return true;
        }
    }

    private Properties shareConsumerProps(String group) {
        Properties p = new Properties();
        p.putAll(base);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.putIfAbsent(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, String.valueOf(timeoutMs));
        return p;
    }

    /**
     * Consumes n records as a member of share group (KIP-932, KafkaShareConsumer,
     * implicit acknowledgement), then stops polling and keeps consuming only
     * to see an authorization failure (BG_INTEROP_SHARE_UNTIL_DENIED=1: the
     * scenario then succeeds only if one comes before the timeout). "seqs"
     * lists every record's seq in the order received.
     */
    private boolean shareConsume(String topic, String group, int n) {
        out.put("topic", topic);
        out.put("group", group);
        boolean untilDenied = "1".equals(System.getenv("BG_INTEROP_SHARE_UNTIL_DENIED"));
        List<Integer> seqs = new ArrayList<>();
        List<String> sample = new ArrayList<>();
        long deadline = System.currentTimeMillis() + timeoutMs;
        try (KafkaShareConsumer<String, String> cons = new KafkaShareConsumer<>(shareConsumerProps(group))) {
            cons.subscribe(Collections.singletonList(topic));
            while ((untilDenied || seqs.size() < n) && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : cons.poll(Duration.ofMillis(500))) {
                    if (sample.size() < 5) {
                        sample.add(r.value());
                    }
                    seqs.add(seqOf(r.value()));
                }
            }
            if (!seqs.isEmpty()) {
                cons.commitSync(Duration.ofMillis(timeoutMs));
                out.put("committed", true);
            }
            out.put("error", null);
            return !untilDenied && seqs.size() >= n;
        } catch (Exception e) {
            return untilDenied && seqs.size() >= n && expectDenied(e);
        } finally {
            out.put("consumed", seqs.size());
            out.put("seqs", seqs);
            out.put("values", sample);
        }
    }

    /** The "seq" of a value written by value() or a test; -1 when it has none. */
    private static int seqOf(String v) {
        int i = v == null ? -1 : v.indexOf("\"seq\":");
        if (i < 0) {
            return -1;
        }
        int j = i + 6, k = j;
        while (k < v.length() && (Character.isDigit(v.charAt(k)) || v.charAt(k) == '-')) {
            k++;
        }
        return k > j ? Integer.parseInt(v.substring(j, k)) : -1;
    }

    /** Share-consumes topic in group and expects an authorization failure. */
    private boolean shareConsumeExpectDenied(String topic, String group) {
        out.put("topic", topic);
        out.put("group", group);
        long deadline = System.currentTimeMillis() + timeoutMs;
        int got = 0;
        try (KafkaShareConsumer<String, String> cons = new KafkaShareConsumer<>(shareConsumerProps(group))) {
            cons.subscribe(Collections.singletonList(topic));
            while (System.currentTimeMillis() < deadline) {
                got += cons.poll(Duration.ofMillis(500)).count();
            }
            out.put("consumed", got);
            out.put("error", null);
            return false;
        } catch (Exception e) {
            out.put("consumed", got);
            return expectDenied(e);
        }
    }

    private boolean produceExpectDenied(String topic) throws Exception {
        out.put("topic", topic);
        try (KafkaProducer<String, String> prod = new KafkaProducer<>(producerProps())) {
            prod.send(new ProducerRecord<>(topic, "k", value(0))).get(timeoutMs, TimeUnit.MILLISECONDS);
            out.put("error", null);
            return false;
        } catch (Exception e) {
            return expectDenied(e);
        }
    }

    private boolean consumeExpectDenied(String topic, String group) {
        out.put("topic", topic);
        return pollExpectDenied(group, cons -> cons.subscribe(Collections.singletonList(topic)));
    }

    /**
     * Subscribes to a pattern that the broker resolves (KIP-848
     * SubscriptionPattern, group.protocol=consumer) and expects an
     * authorization failure.
     */
    private boolean consumePatternExpectDenied(String regex, String group) {
        out.put("pattern", regex);
        return pollExpectDenied(group, cons -> cons.subscribe(new SubscriptionPattern(regex)));
    }

    /** Subscribes as told and polls until an authorization failure or the timeout. */
    private boolean pollExpectDenied(String group, Consumer<KafkaConsumer<String, String>> subscribe) {
        out.put("group", group);
        long deadline = System.currentTimeMillis() + timeoutMs;
        int got = 0;
        try (KafkaConsumer<String, String> cons = new KafkaConsumer<>(consumerProps(group))) {
            subscribe.accept(cons);
            while (System.currentTimeMillis() < deadline) {
                got += cons.poll(Duration.ofMillis(500)).count();
            }
            out.put("consumed", got);
            out.put("error", null);
            return false;
        } catch (Exception e) {
            out.put("consumed", got);
            return expectDenied(e);
        }
    }

    private boolean adminListTopics() throws Exception {
        try (Admin admin = Admin.create(adminProps())) {
            TreeSet<String> names = new TreeSet<>(admin.listTopics().names().get(timeoutMs, TimeUnit.MILLISECONDS));
            out.put("topics", new ArrayList<>(names));
            return true;
        }
    }

    private boolean adminCreateTopic(String topic) throws Exception {
        out.put("topic", topic);
        try (Admin admin = Admin.create(adminProps())) {
            admin.createTopics(Collections.singletonList(new NewTopic(topic, 1, (short) 1)))
                    .all().get(timeoutMs, TimeUnit.MILLISECONDS);
            out.put("created", true);
            return true;
        }
    }

    private boolean adminDeleteTopic(String topic, boolean expectDenied) throws Exception {
        out.put("topic", topic);
        return withAdmin(expectDenied, admin -> {
            admin.deleteTopics(Collections.singletonList(topic)).all().get(timeoutMs, TimeUnit.MILLISECONDS);
            out.put("deleted", true);
        });
    }

    /** An Admin call that either does its work or throws. */
    private interface AdminCall {
        void run(Admin admin) throws Exception;
    }

    /**
     * Runs call with a new AdminClient. Expecting a denial: true when it fails
     * with an authorization error; otherwise true when it succeeds (its
     * exception propagates).
     */
    private boolean withAdmin(boolean expectDenied, AdminCall call) throws Exception {
        try (Admin admin = Admin.create(adminProps())) {
            call.run(admin);
            return !expectDenied;
        } catch (Exception e) {
            if (!expectDenied) {
                throw e;
            }
            return expectDenied(e);
        }
    }

    /**
     * Describes one topic and the cluster with the AdminClient, asking for the
     * authorized operations (KIP-430) of both.
     */
    private boolean adminDescribeTopic(String topic) throws Exception {
        out.put("topic", topic);
        try (Admin admin = Admin.create(adminProps())) {
            TopicDescription d = admin.describeTopics(Collections.singletonList(topic),
                            new DescribeTopicsOptions().includeAuthorizedOperations(true))
                    .allTopicNames().get(timeoutMs, TimeUnit.MILLISECONDS).get(topic);
            out.put("operations", names(d.authorizedOperations()));
            try {
                out.put("cluster_operations", names(admin.describeCluster(
                                new DescribeClusterOptions().includeAuthorizedOperations(true))
                        .authorizedOperations().get(timeoutMs, TimeUnit.MILLISECONDS)));
            } catch (ExecutionException e) {
                out.put("cluster_error", kafkaCause(e).getClass().getSimpleName());
            }
            return true;
        }
    }

    /** Sorted operation names; null when the response carried none (not requested). */
    private static List<String> names(Set<AclOperation> ops) {
        if (ops == null) {
            return null;
        }
        TreeSet<String> n = new TreeSet<>();
        for (AclOperation op : ops) {
            n.add(op.name());
        }
        return new ArrayList<>(n);
    }

    /**
     * Describes one consumer group with the AdminClient (ConsumerGroupDescribe
     * when the broker offers it): its state, member count and the topics
     * assigned to its members.
     */
    private boolean adminDescribeGroup(String group, boolean expectDenied) throws Exception {
        out.put("group", group);
        return withAdmin(expectDenied, admin -> {
            ConsumerGroupDescription d = admin.describeConsumerGroups(Collections.singletonList(group))
                    .describedGroups().get(group).get(timeoutMs, TimeUnit.MILLISECONDS);
            TreeSet<String> topics = new TreeSet<>();
            for (MemberDescription m : d.members()) {
                for (TopicPartition tp : m.assignment().topicPartitions()) {
                    topics.add(tp.topic());
                }
            }
            out.put("state", String.valueOf(d.groupState()));
            out.put("type", String.valueOf(d.type()));
            out.put("members", d.members().size());
            out.put("topics", new ArrayList<>(topics));
            out.put("error", null);
        });
    }

    /**
     * Describes one share group with the AdminClient (ShareGroupDescribe,
     * KIP-932): its state, member count and the topics assigned to its members.
     */
    private boolean adminDescribeShareGroup(String group, boolean expectDenied) throws Exception {
        out.put("group", group);
        return withAdmin(expectDenied, admin -> {
            ShareGroupDescription d = admin.describeShareGroups(Collections.singletonList(group))
                    .describedGroups().get(group).get(timeoutMs, TimeUnit.MILLISECONDS);
            TreeSet<String> topics = new TreeSet<>();
            for (ShareMemberDescription m : d.members()) {
                for (TopicPartition tp : m.assignment().topicPartitions()) {
                    topics.add(tp.topic());
                }
            }
            out.put("state", String.valueOf(d.groupState()));
            out.put("members", d.members().size());
            out.put("topics", new ArrayList<>(topics));
            out.put("error", null);
        });
    }

    /**
     * Adds partitions to topic (total n) with createPartitions (CreatePartitions:
     * alter topic).
     */
    private boolean adminCreatePartitions(String topic, int n, boolean expectDenied) throws Exception {
        out.put("topic", topic);
        return withAdmin(expectDenied, admin -> admin.createPartitions(
                        Collections.singletonMap(topic, NewPartitions.increaseTo(n)))
                .all().get(timeoutMs, TimeUnit.MILLISECONDS));
    }

    /** Sets one config of topic with incrementalAlterConfigs (alter topic). */
    private boolean adminAlterTopicConfig(String topic, String key, String value, boolean expectDenied)
            throws Exception {
        out.put("topic", topic);
        return withAdmin(expectDenied, admin -> {
            ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            admin.incrementalAlterConfigs(Collections.singletonMap(r, Collections.singletonList(
                            new AlterConfigOp(new ConfigEntry(key, value), AlterConfigOp.OpType.SET))))
                    .all().get(timeoutMs, TimeUnit.MILLISECONDS);
        });
    }

    /** describeConfigs of topic (DescribeConfigs: describe topic); reports the config count. */
    private boolean adminDescribeTopicConfig(String topic, boolean expectDenied) throws Exception {
        out.put("topic", topic);
        return withAdmin(expectDenied, admin -> {
            ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            Config c = admin.describeConfigs(Collections.singletonList(r)).all()
                    .get(timeoutMs, TimeUnit.MILLISECONDS).get(r);
            out.put("configs", c.entries().size());
        });
    }

    /** deleteRecords of partition 0 of topic before offset (DeleteRecords: delete topic). */
    private boolean adminDeleteRecords(String topic, long offset, boolean expectDenied) throws Exception {
        out.put("topic", topic);
        return withAdmin(expectDenied, admin -> admin.deleteRecords(Collections.singletonMap(
                        new TopicPartition(topic, 0), RecordsToDelete.beforeOffset(offset)))
                .all().get(timeoutMs, TimeUnit.MILLISECONDS));
    }

    /** deleteConsumerGroups of group (FindCoordinator, then DeleteGroups: delete group). */
    private boolean adminDeleteGroup(String group, boolean expectDenied) throws Exception {
        out.put("group", group);
        return withAdmin(expectDenied, admin -> admin.deleteConsumerGroups(Collections.singletonList(group))
                .all().get(timeoutMs, TimeUnit.MILLISECONDS));
    }

    /**
     * createAcls of the given bindings in one CreateAcls request, each
     * "TYPE,NAME,PRINCIPAL" (a literal pattern, operation ALL, ALLOW, host *).
     * Reports each binding's outcome in request order in "results" (its
     * exception's class and message, or null when it was created); with
     * expectDenied, true only when every binding failed with an authorization
     * error, else only when every one was created.
     */
    private boolean adminCreateAcls(List<String> specs, boolean expectDenied) throws Exception {
        List<AclBinding> bindings = new ArrayList<>();
        for (String s : specs) {
            String[] f = s.split(",", 3);
            if (f.length != 3) {
                throw new IllegalArgumentException("ACL binding TYPE,NAME,PRINCIPAL expected: " + s);
            }
            bindings.add(new AclBinding(
                    new ResourcePattern(ResourceType.fromString(f[0]), f[1], PatternType.LITERAL),
                    new AccessControlEntry(f[2], "*", AclOperation.ALL, AclPermissionType.ALLOW)));
        }
        List<Map<String, Object>> results = new ArrayList<>();
        out.put("results", results);
        boolean allDenied = true, allCreated = true;
        try (Admin admin = Admin.create(adminProps())) {
            Map<AclBinding, KafkaFuture<Void>> values = admin.createAcls(bindings).values();
            for (AclBinding b : bindings) {
                Map<String, Object> r = new LinkedHashMap<>();
                r.put("binding", b.pattern().resourceType() + "," + b.pattern().name() + ","
                        + b.entry().principal());
                try {
                    values.get(b).get(timeoutMs, TimeUnit.MILLISECONDS);
                    r.put("error", null);
                    allDenied = false;
                } catch (ExecutionException e) {
                    Throwable k = kafkaCause(e);
                    r.put("error", k.getClass().getSimpleName());
                    r.put("message", String.valueOf(k.getMessage()));
                    allCreated = false;
                    allDenied &= k instanceof AuthorizationException;
                }
                results.add(r);
            }
        }
        return expectDenied ? allDenied : allCreated;
    }

    /**
     * alterPartitionReassignments of partition 0 of topic onto the broker
     * that describeCluster names first (AlterPartitionReassignments: alter
     * cluster).
     */
    private boolean adminReassign(String topic, boolean expectDenied) throws Exception {
        out.put("topic", topic);
        return withAdmin(expectDenied, admin -> {
            Collection<Node> nodes = admin.describeCluster().nodes().get(timeoutMs, TimeUnit.MILLISECONDS);
            int id = nodes.iterator().next().id();
            admin.alterPartitionReassignments(Collections.singletonMap(new TopicPartition(topic, 0),
                            Optional.of(new NewPartitionReassignment(Collections.singletonList(id)))))
                    .all().get(timeoutMs, TimeUnit.MILLISECONDS);
        });
    }

    /** electLeaders (preferred) of partition 0 of topic (ElectLeaders: alter cluster). */
    private boolean adminElectLeaders(String topic, boolean expectDenied) throws Exception {
        out.put("topic", topic);
        return withAdmin(expectDenied, admin -> admin.electLeaders(ElectionType.PREFERRED,
                        Collections.singleton(new TopicPartition(topic, 0)))
                .all().get(timeoutMs, TimeUnit.MILLISECONDS));
    }

    private Properties adminProps() {
        Properties p = new Properties();
        p.putAll(base);
        p.putIfAbsent(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, String.valueOf(timeoutMs));
        p.putIfAbsent(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, String.valueOf(Math.min(timeoutMs, 15000)));
        return p;
    }

    /** Records the Kafka error behind e; true when it is an authorization failure. */
    private boolean expectDenied(Exception e) {
        Throwable k = kafkaCause(e);
        recordError(e);
        return k instanceof AuthorizationException;
    }

    private void recordError(Throwable e) {
        Throwable k = kafkaCause(e);
        out.put("error", k.getClass().getSimpleName());
        out.put("message", String.valueOf(k.getMessage()));
    }

    /** The innermost Kafka ApiException in e's cause chain, else the root cause. */
    private static Throwable kafkaCause(Throwable e) {
        Throwable found = null;
        Throwable t = e;
        for (int depth = 0; t != null && depth < 16; depth++) {
            if (t instanceof ApiException) {
                found = t;
            }
            if (t.getCause() == null || t.getCause() == t) {
                break;
            }
            t = t.getCause();
        }
        if (found != null) {
            return found;
        }
        return (e instanceof ExecutionException && e.getCause() != null) ? e.getCause() : (t != null ? t : e);
    }
}
