package dev.kqueue.interop;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.avro.AvroRuntimeException;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.generic.GenericRecordBuilder;
import org.apache.kafka.clients.producer.MockProducer;
import org.apache.kafka.clients.producer.Partitioner;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.Cluster;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;

/** KqueueProducer against the shared vectors in schemas/testdata (made by the reference libraries). */
class KqueueProducerTest {

    static final Path SCHEMAS = Path.of(System.getProperty("kqueue.schemas", "../../../schemas"));
    static final ObjectMapper JSON = new ObjectMapper();

    static JsonNode vectors(String name) throws IOException {
        return JSON.readTree(SCHEMAS.resolve("testdata").resolve(name).toFile());
    }

    static Schema sendEmail() throws IOException {
        return new Schema.Parser().parse(SCHEMAS.resolve("send_email.avsc").toFile());
    }

    static Object plain(JsonNode n) {
        if (n.isNull()) {
            return null;
        } else if (n.isInt()) {
            return n.intValue();
        } else if (n.isTextual()) {
            return n.textValue();
        } else if (n.isArray()) {
            List<Object> out = new ArrayList<>();
            n.forEach(item -> out.add(plain(item)));
            return out;
        }
        throw new IllegalArgumentException("unexpected vector value " + n);
    }

    @Test
    void singleObjectEncodingMatchesTheVectors() throws IOException {
        JsonNode vectors = vectors("avro_soe.json");
        assertTrue(vectors.size() >= 5);
        for (JsonNode v : vectors) {
            Schema schema = new Schema.Parser().parse(SCHEMAS.resolve(v.get("schema").textValue()).toFile());
            GenericRecordBuilder b = new GenericRecordBuilder(schema);
            for (Iterator<Map.Entry<String, JsonNode>> it = v.get("payload").fields(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> field = it.next();
                b.set(field.getKey(), plain(field.getValue()));
            }
            byte[] encoded = KqueueProducer.encode(b.build());
            assertEquals(v.get("hex").textValue(), HexFormat.of().formatHex(encoded), v.get("payload").toString());
        }
    }

    @Test
    void keysGoToTheVectorsPartitionsThroughTheDefaultPartitioner() throws Exception {
        JsonNode vectors = vectors("murmur2.json");
        assertTrue(vectors.size() >= 25);
        GenericRecord payload = new GenericRecordBuilder(sendEmail()).set("to", "a@b.c").build();
        for (int n : new int[] {1, 3, 6, 12, 16}) {
            // KafkaProducer without partitioner.class sends a keyed record to
            // BuiltInPartitioner.partitionForKey(serialized key, n); MockProducer is given that path.
            MockProducer<String, byte[]> mock = new MockProducer<>(cluster("q", n), true, new DefaultKeyed(),
                    new StringSerializer(), new ByteArraySerializer());
            KqueueProducer kq = new KqueueProducer(mock);
            for (JsonNode v : vectors) {
                String key = v.get("key").textValue();
                int partition = kq.enqueue("q", "send_email", payload, key).delivery().get().partition();
                assertEquals(v.get("partitions").get(Integer.toString(n)).intValue(), partition,
                        "key " + key + " with " + n + " partitions");
            }
            assertEquals(vectors.size(), mock.history().size());
        }
        Properties config = KqueueProducer.producerConfig("localhost:9092");
        assertFalse(config.containsKey(ProducerConfig.PARTITIONER_CLASS_CONFIG));
        assertFalse(config.containsKey(ProducerConfig.PARTITIONER_IGNORE_KEYS_CONFIG));
        assertEquals("all", config.get(ProducerConfig.ACKS_CONFIG));
    }

    /** What KafkaProducer does for a keyed record when no partitioner.class is configured. */
    public static final class DefaultKeyed implements Partitioner {
        @Override
        public int partition(String topic, Object key, byte[] keyBytes, Object value, byte[] valueBytes,
                             Cluster cluster) {
            return BuiltInPartitioner.partitionForKey(keyBytes, cluster.partitionsForTopic(topic).size());
        }

        @Override
        public void close() {
        }

        @Override
        public void configure(Map<String, ?> configs) {
        }
    }

    @Test
    void headersAreTheDocumentedOnes() throws IOException {
        GenericRecord payload = new GenericRecordBuilder(sendEmail()).set("to", "a@b.c").build();
        String traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        KqueueProducer.Options opts = KqueueProducer.Options.defaults().maxAttempts(3).priority("high")
                .idempotencyKey("signup-123").traceparent(traceparent);
        String id = KqueueProducer.taskId("email", "send_email", "signup-123");
        // kqueue's own id for this idempotency key (kqueue.core.dedup.idempotent_task_id).
        assertEquals("003e08d6-6ee9-5515-b2b7-c9f6af1546e1", id);
        ProducerRecord<String, byte[]> r = KqueueProducer.record("email", "send_email", payload, "user-1", id, opts);
        assertEquals("email.high", r.topic());
        assertEquals("user-1", r.key());
        Map<String, String> got = new HashMap<>();
        for (Header h : r.headers()) {
            got.put(h.key(), new String(h.value(), StandardCharsets.UTF_8));
        }
        long enqueuedAt = Long.parseLong(got.remove("kq-enqueued-at"));
        assertTrue(Math.abs(System.currentTimeMillis() - enqueuedAt) < 60_000);
        assertEquals(Map.of("kq-id", id, "kq-type", "send_email", "kq-attempt", "1", "kq-content-type", "avro",
                "kq-max-attempts", "3", "kq-priority", "high", "kq-idempotency-key", "signup-123",
                "traceparent", traceparent), got);
        assertArrayEquals(KqueueProducer.encode(payload), r.value());
    }

    @Test
    void minimalTaskAndBadInput() throws IOException {
        GenericRecord payload = new GenericRecordBuilder(sendEmail()).set("to", "a@b.c").build();
        ProducerRecord<String, byte[]> r = KqueueProducer.record("jobs", "send_email", payload, null,
                KqueueProducer.taskId("jobs", "send_email", null), KqueueProducer.Options.defaults());
        assertEquals("jobs", r.topic());
        assertEquals(null, r.key());
        assertEquals(5, r.headers().toArray().length);
        assertNotEquals(KqueueProducer.taskId("q", "t", null), KqueueProducer.taskId("q", "t", null));
        assertThrows(IllegalArgumentException.class, () -> KqueueProducer.Options.defaults().priority("urgent"));
        assertThrows(IllegalArgumentException.class, () -> KqueueProducer.record("", "t", payload, null, "id",
                KqueueProducer.Options.defaults()));
        // The builder refuses a record without its required field before anything is encoded.
        assertThrows(AvroRuntimeException.class, () -> new GenericRecordBuilder(sendEmail()).set("subject", "x").build());
    }

    static Cluster cluster(String topic, int partitions) {
        Node node = new Node(0, "localhost", 9092);
        List<PartitionInfo> infos = new ArrayList<>();
        for (int p = 0; p < partitions; p++) {
            infos.add(new PartitionInfo(topic, p, node, new Node[] {node}, new Node[] {node}));
        }
        return new Cluster("c", List.of(node), infos, java.util.Set.of(), java.util.Set.of());
    }
}
