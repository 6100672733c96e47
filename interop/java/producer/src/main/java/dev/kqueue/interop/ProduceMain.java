package dev.kqueue.interop;

import java.io.BufferedWriter;
import java.io.OutputStreamWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.apache.avro.Schema;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.generic.GenericRecordBuilder;

/**
 * Enqueues numbered send_email tasks with {@link KqueueProducer}; tests/interop/test_foreign_producers.py
 * drives it. Task i goes to key "key-(i mod keys)" with that key's sequence number i div keys. Prints
 * one line per task: "task-id key seq".
 *
 * <pre>ProduceMain --bootstrap B --queue Q [--type T] [--schema F] [--count N] [--keys K]
 *             [--producer NAME] [--traceparent TP]</pre>
 */
public final class ProduceMain {

    private ProduceMain() {
    }

    public static void main(String[] args) throws Exception {
        Map<String, String> a = new HashMap<>(Map.of("--bootstrap", "localhost:9092", "--type", "send_email",
                "--schema", "schemas/send_email.avsc", "--count", "1000", "--keys", "50", "--producer", "java"));
        for (int i = 0; i + 1 < args.length; i += 2) {
            a.put(args[i], args[i + 1]);
        }
        if (args.length % 2 != 0 || !a.containsKey("--queue")) {
            System.err.println("usage: ProduceMain --bootstrap B --queue Q [--type T] [--schema F] [--count N] "
                    + "[--keys K] [--producer NAME] [--traceparent TP]");
            System.exit(2);
        }
        Schema schema = new Schema.Parser().parse(Path.of(a.get("--schema")).toFile());
        int count = Integer.parseInt(a.get("--count"));
        int keys = Integer.parseInt(a.get("--keys"));
        String producerName = a.get("--producer");
        KqueueProducer.Options opts = KqueueProducer.Options.defaults().traceparent(a.get("--traceparent"));

        List<KqueueProducer.Enqueued> sent = new ArrayList<>(count);
        BufferedWriter out = new BufferedWriter(new OutputStreamWriter(System.out, StandardCharsets.UTF_8));
        try (KqueueProducer kq = KqueueProducer.connect(a.get("--bootstrap"))) {
            for (int i = 0; i < count; i++) {
                String key = "key-" + (i % keys);
                int seq = i / keys;
                KqueueProducer.Enqueued task = kq.enqueue(a.get("--queue"), a.get("--type"),
                        payload(schema, producerName, key, seq), key, opts);
                sent.add(task);
                out.write(task.taskId() + " " + key + " " + seq + "\n");
            }
            kq.flush();
            for (KqueueProducer.Enqueued task : sent) {
                task.delivery().get(60, TimeUnit.SECONDS); // a failed send throws here: exit 1
            }
        }
        out.flush();
    }

    /** The send_email record for one task; the Go driver and the pytest test build the same values. */
    static GenericRecord payload(Schema schema, String producer, String key, int seq) {
        return new GenericRecordBuilder(schema)
                .set("to", producer + "@" + key + ".example")
                .set("subject", key)
                .set("body", producer + " " + key + " #" + seq + " ✓ ключ 🎉")
                .set("priority", seq)
                .set("tags", List.of(producer, key, Integer.toString(seq)))
                .set("reply_to", seq % 2 == 1 ? producer + "-reply" : null)
                .build();
    }
}
