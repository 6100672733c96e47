// kqueue-produce enqueues numbered send_email tasks to a kqueue queue with the kqueue package; the
// interop test (tests/interop/test_foreign_producers.py) drives it. Task i goes to key
// "key-<i mod keys>" with that key's sequence number i div keys, so per-key order can be checked.
// It prints one line per task: "<task id> <key> <seq>".
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kqueue/kqueue/interop/go/kqueue"
)

func main() {
	bootstrap := flag.String("bootstrap", "localhost:9092", "Kafka bootstrap servers")
	queue := flag.String("queue", "", "kqueue queue (its topics must exist)")
	taskType := flag.String("type", "send_email", "task type (kq-type)")
	schemaPath := flag.String("schema", "schemas/send_email.avsc", "the task type's Avro schema")
	count := flag.Int("count", 1000, "tasks to enqueue")
	keys := flag.Int("keys", 50, "distinct keys")
	producer := flag.String("producer", "go", "name written into each payload")
	traceparent := flag.String("traceparent", "", "W3C traceparent header to send")
	flag.Parse()
	if err := run(*bootstrap, *queue, *taskType, *schemaPath, *count, *keys, *producer, *traceparent); err != nil {
		fmt.Fprintln(os.Stderr, "kqueue-produce:", err)
		os.Exit(1)
	}
}

// Payload is the send_email record; SendEmail in the test builds the same values.
func Payload(producer, key string, seq int) map[string]any {
	payload := map[string]any{
		"to":       producer + "@" + key + ".example",
		"subject":  key,
		"body":     fmt.Sprintf("%s %s #%d ✓ ключ 🎉", producer, key, seq),
		"priority": seq,
		"tags":     []any{producer, key, strconv.Itoa(seq)},
		"reply_to": nil,
	}
	if seq%2 == 1 {
		payload["reply_to"] = producer + "-reply"
	}
	return payload
}

func run(bootstrap, queue, taskType, schemaPath string, count, keys int, producer, traceparent string) error {
	if queue == "" || count < 0 || keys < 1 {
		return fmt.Errorf("need -queue, -count >= 0 and -keys >= 1")
	}
	schema, err := kqueue.LoadSchema(schemaPath)
	if err != nil {
		return err
	}
	client, err := kgo.NewClient(kgo.SeedBrokers(bootstrap))
	if err != nil {
		return err
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	var mu sync.Mutex
	var firstErr error
	for i := 0; i < count; i++ {
		key, seq := "key-"+strconv.Itoa(i%keys), i/keys
		opts := kqueue.Options{Schema: schema, Key: key, Traceparent: traceparent}
		record, id, err := kqueue.NewRecord(queue, taskType, Payload(producer, key, seq), opts)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s %s %d\n", id, key, seq)
		// Asynchronous sends keep per-partition order: franz-go's producer is idempotent by default.
		client.Produce(ctx, record, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	if err := client.Flush(ctx); err != nil {
		return err
	}
	return firstErr
}
