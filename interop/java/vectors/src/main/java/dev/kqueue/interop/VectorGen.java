package dev.kqueue.interop;

import java.io.IOException;
import java.io.Writer;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.generic.GenericRecordBuilder;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.BinaryMessageEncoder;
import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;
import org.apache.kafka.common.utils.Utils;

/**
 * Generates cross-language interop test vectors for kqueue using the reference
 * Java implementations (Apache Avro and Apache Kafka clients), independently of
 * the Python code base.
 *
 * <pre>
 *   VectorGen &lt;schemas-dir&gt; &lt;out-dir&gt;
 * </pre>
 *
 * Writes:
 * <ul>
 *   <li>{@code avro_soe.json}: Avro single-object encodings (C3 01 + 8-byte
 *       little-endian CRC-64-AVRO fingerprint + binary body) produced by
 *       {@link BinaryMessageEncoder}.</li>
 *   <li>{@code murmur2.json}: Kafka {@link Utils#murmur2(byte[])} hashes of UTF-8
 *       keys and the partition chosen by the default partitioner
 *       ({@link BuiltInPartitioner#partitionForKey(byte[], int)}).</li>
 * </ul>
 *
 * Output is deterministic (fixed inputs, insertion-ordered JSON, UTF-8, LF).
 */
public final class VectorGen {

    static final String SEND_EMAIL = "send_email.avsc";
    static final int[] PARTITION_COUNTS = {1, 3, 6, 12, 16};

    private VectorGen() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: VectorGen <schemas-dir> <out-dir>");
            System.exit(2);
        }
        Path schemasDir = Path.of(args[0]);
        Path outDir = Path.of(args[1]);
        Files.createDirectories(outDir);

        List<Object> avro = avroVectors(schemasDir, SEND_EMAIL, sendEmailPayloads());
        writeJson(outDir.resolve("avro_soe.json"), avro);

        List<Object> murmur = murmur2Vectors(murmurKeys());
        writeJson(outDir.resolve("murmur2.json"), murmur);

        System.err.printf("VectorGen: wrote %d avro vectors and %d murmur2 vectors to %s%n",
                avro.size(), murmur.size(), outDir);
    }

    // ------------------------------------------------------------------ Avro

    /** Payloads for send_email.avsc, as plain values (no Avro-JSON union wrapping). */
    static List<Map<String, Object>> sendEmailPayloads() {
        List<Map<String, Object>> p = new ArrayList<>();

        // 1. minimal: only the required field; every other field takes its schema default.
        p.add(obj("to", "alice@example.com"));

        // 2. all fields set, reply_to as a string, non-empty tags.
        p.add(obj("to", "bob@example.com",
                "subject", "Welcome",
                "body", "Hello Bob,\nthanks for signing up.\n",
                "priority", 5,
                "tags", List.of("welcome", "onboarding", "v2"),
                "reply_to", "support@example.com"));

        // 3. unicode text everywhere (2-, 3- and 4-byte UTF-8 sequences).
        p.add(obj("to", "josé@exämple.com",
                "subject", "héllo ✓ 日本",
                "body", "Ünïcödé body — emoji 🎉😀, CJK 日本語, Cyrillic ключ",
                "priority", 1,
                "tags", List.of("日本", "✓", "🎉"),
                "reply_to", "ответ@example.com"));

        // 4. empty strings and empty array, reply_to explicitly null, priority 0.
        p.add(obj("to", "",
                "subject", "",
                "body", "",
                "priority", 0,
                "tags", List.of(),
                "reply_to", null));

        // 5. negative priority, reply_to as empty string (distinct from null), tags with an empty string.
        p.add(obj("to", "carol@example.com",
                "subject", "negative",
                "priority", -1,
                "tags", List.of("", "x"),
                "reply_to", ""));

        // 6. Integer.MAX_VALUE priority (5-byte zigzag varint).
        p.add(obj("to", "dave@example.com",
                "subject", "max int",
                "priority", Integer.MAX_VALUE,
                "reply_to", "noreply@example.com"));

        // 7. Integer.MIN_VALUE priority.
        p.add(obj("to", "erin@example.com",
                "subject", "min int",
                "priority", Integer.MIN_VALUE,
                "tags", List.of("a")));

        // 8. varint boundary values (zigzag 64 -> 2 bytes, -65 -> 2 bytes) and a long body
        //    (string length needs a multi-byte varint).
        p.add(obj("to", "frank@example.com",
                "subject", "varint boundary",
                "body", "x".repeat(300),
                "priority", 64,
                "tags", List.of("t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9", "t10")));
        p.add(obj("to", "grace@example.com",
                "priority", -65,
                "reply_to", "grace+reply@example.com"));

        // 9. large (but not extreme) priority.
        p.add(obj("to", "heidi@example.com",
                "subject", "big",
                "priority", 1_000_000,
                "tags", List.of("bulk")));
        return p;
    }

    static List<Object> avroVectors(Path schemasDir, String schemaFile, List<Map<String, Object>> payloads)
            throws IOException {
        Schema schema = new Schema.Parser().parse(schemasDir.resolve(schemaFile).toFile());
        long fpLong = SchemaNormalization.parsingFingerprint64(schema);
        byte[] fpWire = ByteBuffer.allocate(8).order(java.nio.ByteOrder.LITTLE_ENDIAN).putLong(fpLong).array();
        String fpHex = hex(fpWire);

        BinaryMessageEncoder<GenericRecord> encoder = new BinaryMessageEncoder<>(GenericData.get(), schema);
        BinaryMessageDecoder<GenericRecord> decoder = new BinaryMessageDecoder<>(GenericData.get(), schema);

        List<Object> out = new ArrayList<>();
        for (Map<String, Object> payload : payloads) {
            GenericRecordBuilder b = new GenericRecordBuilder(schema);
            for (Map.Entry<String, Object> e : payload.entrySet()) {
                if (schema.getField(e.getKey()) == null) {
                    throw new IllegalArgumentException("unknown field " + e.getKey());
                }
                b.set(e.getKey(), e.getValue());
            }
            GenericRecord rec = b.build();
            if (!GenericData.get().validate(schema, rec)) {
                throw new IllegalStateException("invalid record " + payload);
            }
            byte[] bytes = toArray(encoder.encode(rec));

            // Self-checks: header layout and round trip through the reference decoder.
            if ((bytes[0] & 0xff) != 0xC3 || (bytes[1] & 0xff) != 0x01
                    || !Arrays.equals(Arrays.copyOfRange(bytes, 2, 10), fpWire)) {
                throw new IllegalStateException("unexpected single-object header: " + hex(bytes));
            }
            GenericRecord back = decoder.decode(bytes);
            if (GenericData.get().compare(rec, back, schema) != 0) {
                throw new IllegalStateException("round trip mismatch for " + payload);
            }

            Map<String, Object> v = new LinkedHashMap<>();
            v.put("schema", schemaFile);
            v.put("fingerprint_hex", fpHex);
            v.put("fingerprint_long", fpLong);
            v.put("payload", payload);
            v.put("hex", hex(bytes));
            out.add(v);
        }
        return out;
    }

    // --------------------------------------------------------------- murmur2

    static List<String> murmurKeys() {
        List<String> keys = new ArrayList<>();
        keys.add("");
        keys.add("a");
        keys.add("user-123");
        for (int i = 1; i <= 10; i++) {
            keys.add("user-" + i);
        }
        // ASCII keys of length 2..8 ("a" above is length 1): every tail size 0..3, twice.
        String alphabet = "abcdefgh";
        for (int n = 2; n <= 8; n++) {
            keys.add(alphabet.substring(0, n));
        }
        // Non-ASCII bytes (>= 0x80) in the tail, to catch sign-extension bugs.
        keys.add("é");        // 2 bytes: c3 a9           (tail 2)
        keys.add("€");        // 3 bytes: e2 82 ac        (tail 3)
        keys.add("aé");       // 3 bytes                  (tail 3)
        keys.add("ÿ");        // 2 bytes: c3 bf
        keys.add("\u0080");   // 2 bytes: c2 80
        keys.add("abcdé");    // 6 bytes                  (tail 2, high bytes)
        keys.add("abcd€");    // 7 bytes                  (tail 3, high bytes)
        keys.add("🎉");       // 4 bytes: f0 9f 8e 89     (tail 0, high bytes in body)
        // Unicode keys.
        keys.add("ключ");
        keys.add("日本語");
        keys.add("emoji-🎉");
        keys.add("tenant/ключ/日本語/🎉");
        // Whitespace / control characters.
        keys.add(" ");
        keys.add("a b\tc\n");
        keys.add("\u0000");
        // Long keys.
        keys.add("k".repeat(100));
        keys.add("0123456789".repeat(10) + "x");      // 101 bytes (tail 1)
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < 257; i++) {
            sb.append((char) ('a' + (i % 26)));
        }
        keys.add(sb.toString());                      // 257 bytes (tail 1)
        // Typical task-queue keys.
        keys.add("send_email");
        keys.add("tenant-42:order-9001");
        keys.add("00000000-0000-0000-0000-000000000000");
        keys.add("9b2f6c1e-3d4a-4f5b-8c7d-0e1f2a3b4c5d");
        return keys;
    }

    static List<Object> murmur2Vectors(List<String> keys) {
        List<Object> out = new ArrayList<>();
        java.util.Set<String> seen = new java.util.HashSet<>();
        for (String key : keys) {
            if (!seen.add(key)) {
                throw new IllegalStateException("duplicate key " + key);
            }
            byte[] bytes = key.getBytes(StandardCharsets.UTF_8); // what StringSerializer produces
            int h = Utils.murmur2(bytes);
            Map<String, Object> parts = new LinkedHashMap<>();
            for (int n : PARTITION_COUNTS) {
                int p = Utils.toPositive(h) % n;
                // Cross-check against the producer's own code path for keyed records.
                int ref = BuiltInPartitioner.partitionForKey(bytes, n);
                if (p != ref) {
                    throw new IllegalStateException("partition mismatch for " + key);
                }
                parts.put(Integer.toString(n), p);
            }
            Map<String, Object> v = new LinkedHashMap<>();
            v.put("key", key);
            v.put("murmur2", h);
            v.put("partitions", parts);
            out.add(v);
        }
        return out;
    }

    // --------------------------------------------------------------- helpers

    private static Map<String, Object> obj(Object... kv) {
        Map<String, Object> m = new LinkedHashMap<>();
        for (int i = 0; i < kv.length; i += 2) {
            m.put((String) kv[i], kv[i + 1]);
        }
        return m;
    }

    private static byte[] toArray(ByteBuffer buf) {
        ByteBuffer b = buf.duplicate();
        byte[] a = new byte[b.remaining()];
        b.get(a);
        return a;
    }

    static String hex(byte[] bytes) {
        StringBuilder sb = new StringBuilder(bytes.length * 2);
        for (byte x : bytes) {
            sb.append(Character.forDigit((x >> 4) & 0xf, 16));
            sb.append(Character.forDigit(x & 0xf, 16));
        }
        return sb.toString();
    }

    // Minimal deterministic JSON writer (2-space indent, UTF-8, non-ASCII kept as-is).

    static void writeJson(Path file, Object value) throws IOException {
        StringBuilder sb = new StringBuilder();
        json(sb, value, 0);
        sb.append('\n');
        try (Writer w = Files.newBufferedWriter(file, StandardCharsets.UTF_8)) {
            w.write(sb.toString());
        }
    }

    private static void indent(StringBuilder sb, int level) {
        sb.append('\n');
        for (int i = 0; i < level; i++) {
            sb.append("  ");
        }
    }

    private static void json(StringBuilder sb, Object v, int level) {
        if (v == null) {
            sb.append("null");
        } else if (v instanceof String s) {
            jsonString(sb, s);
        } else if (v instanceof Integer || v instanceof Long) {
            sb.append(v);
        } else if (v instanceof Boolean) {
            sb.append(v);
        } else if (v instanceof Map<?, ?> m) {
            if (m.isEmpty()) {
                sb.append("{}");
                return;
            }
            sb.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : m.entrySet()) {
                if (!first) {
                    sb.append(',');
                }
                first = false;
                indent(sb, level + 1);
                jsonString(sb, (String) e.getKey());
                sb.append(": ");
                json(sb, e.getValue(), level + 1);
            }
            indent(sb, level);
            sb.append('}');
        } else if (v instanceof List<?> l) {
            if (l.isEmpty()) {
                sb.append("[]");
                return;
            }
            sb.append('[');
            for (int i = 0; i < l.size(); i++) {
                if (i > 0) {
                    sb.append(',');
                }
                indent(sb, level + 1);
                json(sb, l.get(i), level + 1);
            }
            indent(sb, level);
            sb.append(']');
        } else {
            throw new IllegalArgumentException("unsupported JSON value: " + v.getClass());
        }
    }

    private static void jsonString(StringBuilder sb, String s) {
        sb.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> sb.append("\\\"");
                case '\\' -> sb.append("\\\\");
                case '\n' -> sb.append("\\n");
                case '\r' -> sb.append("\\r");
                case '\t' -> sb.append("\\t");
                case '\b' -> sb.append("\\b");
                case '\f' -> sb.append("\\f");
                default -> {
                    if (c < 0x20 || c == 0x7f || Character.isSurrogate(c) && !validSurrogate(s, i)) {
                        sb.append(String.format("\\u%04x", (int) c));
                    } else {
                        sb.append(c);
                    }
                }
            }
        }
        sb.append('"');
    }

    private static boolean validSurrogate(String s, int i) {
        char c = s.charAt(i);
        if (Character.isHighSurrogate(c)) {
            return i + 1 < s.length() && Character.isLowSurrogate(s.charAt(i + 1));
        }
        return i > 0 && Character.isHighSurrogate(s.charAt(i - 1));
    }
}
