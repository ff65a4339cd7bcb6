/*
 * Kafka's half of the differential check of busgate's Kafka codec
 * (tests/interop/kafka-codec/run.sh; docs/testing.md). Only kafka-clients'
 * generated message classes encode and decode here: they are the reference.
 *
 *   java KafkaCodecOracle VECTORS DEFAULTS_OUT RANDOM_IN RANDOM_OUT
 *
 * 1. Each line of VECTORS (busgate's generated vectors) is read by Kafka's
 *    class for its message, consuming every byte, and written again to the
 *    same bytes.
 * 2. DEFAULTS_OUT gets Kafka's default instance of every message at every
 *    version it knows, unstable ones included.
 * 3. Each line of RANDOM_IN is read by the message's generated JsonConverter
 *    and written to RANDOM_OUT as bytes.
 * Byte lines are "NAME API_KEY IS_RESPONSE VERSION HEX", JSON lines the same
 * with JSON instead of HEX. Every failure prints a line naming the message
 * and version; the exit status is 1 when anything failed.
 */
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.BufferedReader;
import java.io.PrintWriter;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.HexFormat;
import org.apache.kafka.common.message.ApiMessageType;
import org.apache.kafka.common.protocol.ApiMessage;
import org.apache.kafka.common.protocol.ByteBufferAccessor;
import org.apache.kafka.common.protocol.ObjectSerializationCache;

public class KafkaCodecOracle {
    private static final HexFormat HEX = HexFormat.of();
    private static int failures;

    private static void fail(String name, short version, String what) {
        failures++;
        System.out.println("MISMATCH " + name + " v" + version + ": " + what);
    }

    private static ApiMessage newMessage(short apiKey, boolean response) {
        ApiMessageType t = ApiMessageType.fromApiKey(apiKey);
        return response ? t.newResponse() : t.newRequest();
    }

    /** "ProduceRequestData" -> "ProduceRequest", the name busgate and the JSON files use. */
    private static String messageName(ApiMessage m) {
        return m.getClass().getSimpleName().replaceFirst("Data$", "");
    }

    private static byte[] write(ApiMessage m, short version) {
        ObjectSerializationCache cache = new ObjectSerializationCache();
        ByteBuffer buf = ByteBuffer.allocate(m.size(cache, version));
        m.write(new ByteBufferAccessor(buf), cache, version);
        return buf.array();
    }

    private static String line(String name, short apiKey, boolean response, short version, byte[] b) {
        return name + " " + apiKey + " " + (response ? 1 : 0) + " " + version + " " + HEX.formatHex(b);
    }

    private static Throwable cause(Throwable e) {
        return e instanceof InvocationTargetException && e.getCause() != null ? e.getCause() : e;
    }

    private static String abbrev(String s) {
        return s.length() <= 200 ? s : s.substring(0, 200) + "...";
    }

    /** Step 1: busgate's vectors as Kafka reads and writes them. */
    private static void checkVectors(String path) throws Exception {
        int ok = 0;
        for (String l : Files.readAllLines(Paths.get(path))) {
            String[] p = l.split(" ", 5);
            short apiKey = Short.parseShort(p[1]), version = Short.parseShort(p[3]);
            byte[] in = HEX.parseHex(p.length > 4 ? p[4] : "");
            try {
                ApiMessage m = newMessage(apiKey, p[2].equals("1"));
                if (!messageName(m).equals(p[0])) {
                    fail(p[0], version, "Kafka's api key " + apiKey + " is " + messageName(m));
                    continue;
                }
                ByteBuffer buf = ByteBuffer.wrap(in);
                m.read(new ByteBufferAccessor(buf), version);
                byte[] out = write(m, version);
                if (buf.remaining() != 0)
                    fail(p[0], version, "vector: Kafka left " + buf.remaining() + " of " + in.length + " bytes");
                else if (!java.util.Arrays.equals(in, out))
                    fail(p[0], version, "vector: Kafka re-wrote " + out.length + " bytes, not the vector's " + in.length);
                else
                    ok++;
            } catch (Exception e) {
                fail(p[0], version, "vector: Kafka could not read it: " + e);
            }
        }
        System.out.println("kafka vectors: " + ok + " read and re-written unchanged");
    }

    /** Step 2: Kafka's default instances, for busgate to compare with its own. */
    private static void writeDefaults(String path) throws Exception {
        int n = 0;
        try (PrintWriter w = new PrintWriter(path)) {
            for (ApiMessageType t : ApiMessageType.values()) {
                for (short v = t.lowestSupportedVersion(); v <= t.highestSupportedVersion(true); v++) {
                    for (boolean response : new boolean[] {false, true}) {
                        ApiMessage m = newMessage(t.apiKey(), response);
                        try {
                            w.println(line(messageName(m), t.apiKey(), response, v, write(m, v)));
                            n++;
                        } catch (Exception e) {
                            fail(messageName(m), v, "Kafka could not write its default instance: " + e);
                        }
                    }
                }
            }
        }
        System.out.println("kafka defaults: " + n + " default instances written");
    }

    /** Step 3: random messages from JSON, written by Kafka. */
    private static void writeRandom(String in, String out) throws Exception {
        ObjectMapper json = new ObjectMapper();
        int n = 0;
        try (BufferedReader r = Files.newBufferedReader(Paths.get(in));
             PrintWriter w = new PrintWriter(out)) {
            for (String l; (l = r.readLine()) != null; ) {
                String[] p = l.split(" ", 5);
                short apiKey = Short.parseShort(p[1]), version = Short.parseShort(p[3]);
                try {
                    Class<?> conv = Class.forName("org.apache.kafka.common.message." + p[0] + "DataJsonConverter");
                    Method read = conv.getMethod("read", JsonNode.class, short.class);
                    ApiMessage m = (ApiMessage) read.invoke(null, json.readTree(p[4]), version);
                    w.println(line(p[0], apiKey, p[2].equals("1"), version, write(m, version)));
                    n++;
                } catch (Exception e) {
                    fail(p[0], version, "random: Kafka could not build or write " + abbrev(p[4]) + ": " + cause(e));
                }
            }
        }
        System.out.println("kafka random: " + n + " messages written");
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: KafkaCodecOracle VECTORS DEFAULTS_OUT RANDOM_IN RANDOM_OUT");
            System.exit(2);
        }
        checkVectors(args[0]);
        writeDefaults(args[1]);
        writeRandom(args[2], args[3]);
        System.exit(failures == 0 ? 0 : 1);
    }
}
