package dev.kqueue.interop;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Map;
import java.util.Objects;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Future;

import org.apache.avro.Schema;
import org.apache.avro.generic.GenericContainer;
import org.apache.avro.generic.GenericData;
import org.apache.avro.message.BinaryMessageEncoder;
import org.apache.avro.specific.SpecificData;
import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.Producer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Enqueues tasks to a kqueue queue from Java: one Kafka record per task, its value the Avro
 * single-object encoding of the payload ({@link BinaryMessageEncoder}: {@code C3 01}, the schema's
 * CRC-64-AVRO fingerprint, the body), its metadata in the documented {@code kq-*} headers. The
 * producer keeps kafka-clients' default partitioner, which hashes keys with murmur2 as kqueue does,
 * so a key lands on the same partition whoever enqueues it.
 *
 * <pre>{@code
 * try (KqueueProducer kq = KqueueProducer.connect("localhost:9092")) {
 *     GenericRecord email = new GenericRecordBuilder(schema).set("to", "a@b.c").build();
 *     String id = kq.enqueue("email", "send_email", email, "user-123").taskId();
 *     kq.flush();
 * }
 * }</pre>
 */
public final class KqueueProducer implements AutoCloseable {

    // Header names: the contract in kqueue's docs/design.md ("Headers").
    public static final String H_ID = "kq-id";
    public static final String H_TYPE = "kq-type";
    public static final String H_ATTEMPT = "kq-attempt";
    public static final String H_MAX_ATTEMPTS = "kq-max-attempts";
    public static final String H_ENQUEUED_AT = "kq-enqueued-at";
    public static final String H_PRIORITY = "kq-priority";
    public static final String H_IDEMPOTENCY_KEY = "kq-idempotency-key";
    public static final String H_CONTENT_TYPE = "kq-content-type";
    public static final String H_TRACEPARENT = "traceparent";
    public static final String H_TRACESTATE = "tracestate";

    /** kqueue's namespace for idempotent task ids (kqueue/core/dedup.py). */
    private static final UUID IDEMPOTENT_NAMESPACE = UUID.fromString("a7d4c1e2-93b8-5f06-8e2d-4c1b7a9e3f50");

    private static final Map<Schema, BinaryMessageEncoder<Object>> ENCODERS = new ConcurrentHashMap<>();

    private final Producer<String, byte[]> producer;

    /** A task handed to the producer: its id, and the send to wait on (delivery errors surface there). */
    public record Enqueued(String taskId, Future<RecordMetadata> delivery) {
    }

    /** Per-task options; every one may stay unset. */
    public static final class Options {
        String taskId;
        int maxAttempts;
        String priority;
        String idempotencyKey;
        String traceparent;
        String tracestate;
        String topicPrefix = "";

        public static Options defaults() {
            return new Options();
        }

        /** The task id (default: derived from the idempotency key, else a random UUID). */
        public Options taskId(String id) {
            this.taskId = id;
            return this;
        }

        /** Attempts in all (default: the worker's task definition). */
        public Options maxAttempts(int n) {
            if (n < 1) {
                throw new IllegalArgumentException("maxAttempts must be at least 1");
            }
            this.maxAttempts = n;
            return this;
        }

        /** "high", "normal" or "low": the lane topics Q.high, Q, Q.low. */
        public Options priority(String p) {
            if (!"high".equals(p) && !"normal".equals(p) && !"low".equals(p)) {
                throw new IllegalArgumentException("priority must be high, normal or low, not " + p);
            }
            this.priority = p;
            return this;
        }

        public Options idempotencyKey(String key) {
            this.idempotencyKey = key;
            return this;
        }

        /** W3C trace context of the caller, passed on as it is. */
        public Options traceparent(String value) {
            this.traceparent = value;
            return this;
        }

        public Options tracestate(String value) {
            this.tracestate = value;
            return this;
        }

        /** The kqueue App's topic_prefix, if it has one. */
        public Options topicPrefix(String prefix) {
            this.topicPrefix = Objects.requireNonNull(prefix);
            return this;
        }
    }

    public KqueueProducer(Producer<String, byte[]> producer) {
        this.producer = Objects.requireNonNull(producer);
    }

    /** A producer with the settings kqueue's own use: acks=all, idempotence, the default partitioner. */
    public static KqueueProducer connect(String bootstrapServers) {
        return new KqueueProducer(new KafkaProducer<>(producerConfig(bootstrapServers)));
    }

    public static Properties producerConfig(String bootstrapServers) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrapServers);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        return p;
    }

    public Enqueued enqueue(String queue, String taskType, GenericContainer payload, String key) {
        return enqueue(queue, taskType, payload, key, Options.defaults());
    }

    /** Sends one task (key may be null: no per-key order); wait on {@code delivery} or call flush(). */
    public Enqueued enqueue(String queue, String taskType, GenericContainer payload, String key, Options opts) {
        String taskId = opts.taskId != null ? opts.taskId : taskId(queue, taskType, opts.idempotencyKey);
        ProducerRecord<String, byte[]> record = record(queue, taskType, payload, key, taskId, opts);
        return new Enqueued(taskId, producer.send(record));
    }

    /** The task's record, built without sending it. */
    public static ProducerRecord<String, byte[]> record(String queue, String taskType, GenericContainer payload,
                                                        String key, String taskId, Options opts) {
        if (queue == null || queue.isEmpty() || taskType == null || taskType.isEmpty()) {
            throw new IllegalArgumentException("queue and task type are required");
        }
        String topic = opts.topicPrefix + queue;
        if ("high".equals(opts.priority) || "low".equals(opts.priority)) {
            topic += "." + opts.priority;
        }
        RecordHeaders headers = new RecordHeaders();
        header(headers, H_ID, taskId);
        header(headers, H_TYPE, taskType);
        header(headers, H_ATTEMPT, "1");
        header(headers, H_ENQUEUED_AT, Long.toString(System.currentTimeMillis()));
        header(headers, H_CONTENT_TYPE, "avro");
        if (opts.maxAttempts > 0) {
            header(headers, H_MAX_ATTEMPTS, Integer.toString(opts.maxAttempts));
        }
        header(headers, H_PRIORITY, opts.priority);
        header(headers, H_IDEMPOTENCY_KEY, opts.idempotencyKey);
        header(headers, H_TRACEPARENT, opts.traceparent);
        header(headers, H_TRACESTATE, opts.tracestate);
        return new ProducerRecord<>(topic, null, key, encode(payload), headers);
    }

    /** The payload's Avro single-object encoding, as BinaryMessageEncoder writes it. */
    public static byte[] encode(GenericContainer payload) {
        Schema schema = payload.getSchema();
        BinaryMessageEncoder<Object> encoder = ENCODERS.computeIfAbsent(schema, s ->
                new BinaryMessageEncoder<>(payload instanceof SpecificRecord ? SpecificData.get() : GenericData.get(), s));
        try {
            ByteBuffer buf = encoder.encode(payload);
            byte[] out = new byte[buf.remaining()];
            buf.get(out);
            return out;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot encode the payload with " + schema.getFullName(), e);
        }
    }

    /**
     * The id kqueue gives a new task: with an idempotency key, the UUIDv5 every producer derives from
     * (queue, type, key), so retried or racing enqueues in any language name the same task; else random.
     */
    public static String taskId(String queue, String taskType, String idempotencyKey) {
        if (idempotencyKey == null) {
            return UUID.randomUUID().toString();
        }
        try {
            MessageDigest sha1 = MessageDigest.getInstance("SHA-1");
            sha1.update(ByteBuffer.allocate(16).putLong(IDEMPOTENT_NAMESPACE.getMostSignificantBits())
                    .putLong(IDEMPOTENT_NAMESPACE.getLeastSignificantBits()).array());
            sha1.update((queue + "\0" + taskType + "\0" + idempotencyKey).getBytes(StandardCharsets.UTF_8));
            ByteBuffer b = ByteBuffer.wrap(sha1.digest(), 0, 16);
            long hi = (b.getLong() & ~0xF000L) | 0x5000L;
            long lo = (b.getLong() & 0x3FFFFFFFFFFFFFFFL) | 0x8000000000000000L;
            return new UUID(hi, lo).toString();
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-1 is part of every JDK", e);
        }
    }

    private static void header(RecordHeaders headers, String name, String value) {
        if (value != null) {
            headers.add(name, value.getBytes(StandardCharsets.UTF_8));
        }
    }

    public void flush() {
        producer.flush();
    }

    @Override
    public void close() {
        producer.close();
    }
}
