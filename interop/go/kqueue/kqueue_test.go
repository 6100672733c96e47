package kqueue_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kqueue/kqueue/interop/go/kqueue"
)

// The shared vectors, made by Java's Avro and Kafka libraries (schemas/testdata/README.md).
var schemasDir = filepath.Join("..", "..", "..", "schemas")

type avroVector struct {
	Schema         string         `json:"schema"`
	FingerprintHex string         `json:"fingerprint_hex"`
	Payload        map[string]any `json:"payload"`
	Hex            string         `json:"hex"`
}

type murmurVector struct {
	Key        string         `json:"key"`
	Partitions map[string]int `json:"partitions"`
}

func load(t *testing.T, name string, into any) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(schemasDir, "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	decoder := json.NewDecoder(bytes.NewReader(raw))
	decoder.UseNumber()
	if err := decoder.Decode(into); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// avroValue turns JSON numbers into Go ints (every number in the vectors is an Avro int).
func avroValue(t *testing.T, v any) any {
	switch x := v.(type) {
	case json.Number:
		n, err := strconv.ParseInt(string(x), 10, 32)
		if err != nil {
			t.Fatalf("vector number %s: %v", x, err)
		}
		return int(n)
	case []any:
		out := make([]any, len(x))
		for i, item := range x {
			out[i] = avroValue(t, item)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, item := range x {
			out[k] = avroValue(t, item)
		}
		return out
	}
	return v
}

func TestSingleObjectEncodingMatchesJavaVectors(t *testing.T) {
	var vectors []avroVector
	load(t, "avro_soe.json", &vectors)
	if len(vectors) < 5 {
		t.Fatalf("only %d Avro vectors", len(vectors))
	}
	for i, v := range vectors {
		schema, err := kqueue.LoadSchema(filepath.Join(schemasDir, v.Schema))
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(schema.Fingerprint()); got != v.FingerprintHex {
			t.Fatalf("fingerprint %s, Java's %s", got, v.FingerprintHex)
		}
		encoded, err := schema.Encode(avroValue(t, v.Payload))
		if err != nil {
			t.Fatalf("vector %d: %v", i, err)
		}
		if got := hex.EncodeToString(encoded); got != v.Hex {
			t.Errorf("vector %d (%v):\n got  %s\n want %s", i, v.Payload, got, v.Hex)
		}
	}
}

func TestDefaultPartitionerMatchesJavaVectors(t *testing.T) {
	var vectors []murmurVector
	load(t, "murmur2.json", &vectors)
	if len(vectors) < 25 {
		t.Fatalf("only %d murmur2 vectors", len(vectors))
	}
	for _, v := range vectors {
		// The records NewRecord builds, through franz-go's default partitioner (UniformBytes, keys hashed).
		record, _, err := kqueue.NewRecord("q", "t", map[string]any{}, kqueue.Options{Key: v.Key})
		if err != nil {
			t.Fatal(err)
		}
		for n, want := range v.Partitions {
			count, _ := strconv.Atoi(n)
			if v.Key == "" {
				continue // NewRecord sends "" keyless (checked below)
			}
			partitioner := kgo.UniformBytesPartitioner(64<<10, true, true, nil).ForTopic("q")
			keyed, ok := partitioner.(kgo.TopicBackupPartitioner)
			if !ok {
				t.Fatal("franz-go's default partitioner changed shape")
			}
			if got := keyed.PartitionByBackup(record, count, nil); got != want {
				t.Errorf("key %q with %d partitions: %d, Java's %d", v.Key, count, got, want)
			}
		}
	}
}

func TestHeadersAreTheDocumentedOnes(t *testing.T) {
	schema, err := kqueue.LoadSchema(filepath.Join(schemasDir, "send_email.avsc"))
	if err != nil {
		t.Fatal(err)
	}
	record, id, err := kqueue.NewRecord("email", "send_email", map[string]any{"to": "a@b.c"}, kqueue.Options{
		Schema: schema, Key: "user-1", MaxAttempts: 3, Priority: "high", IdempotencyKey: "signup-123",
		Traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	})
	if err != nil {
		t.Fatal(err)
	}
	if record.Topic != "email.high" || string(record.Key) != "user-1" {
		t.Fatalf("topic %s key %q", record.Topic, record.Key)
	}
	// kqueue's own id for this idempotency key (kqueue.core.dedup.idempotent_task_id).
	if id != "003e08d6-6ee9-5515-b2b7-c9f6af1546e1" {
		t.Fatalf("idempotent id %s", id)
	}
	got := map[string]string{}
	for _, h := range record.Headers {
		got[h.Key] = string(h.Value)
	}
	if _, err := strconv.ParseInt(got["kq-enqueued-at"], 10, 64); err != nil {
		t.Fatalf("kq-enqueued-at %q", got["kq-enqueued-at"])
	}
	delete(got, "kq-enqueued-at")
	want := map[string]string{
		"kq-id": id, "kq-type": "send_email", "kq-attempt": "1", "kq-content-type": "avro",
		"kq-max-attempts": "3", "kq-priority": "high", "kq-idempotency-key": "signup-123",
		"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	}
	if len(got) != len(want) {
		t.Fatalf("headers %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("header %s = %q, want %q", k, got[k], v)
		}
	}
	if !bytes.HasPrefix(record.Value, append([]byte{0xC3, 0x01}, schema.Fingerprint()...)) {
		t.Fatalf("value %x is not single-object encoded", record.Value)
	}
}

func TestMinimalTaskAndBadInput(t *testing.T) {
	record, id, err := kqueue.NewRecord("jobs", "ping", map[string]any{"n": 1}, kqueue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if record.Key != nil || record.Topic != "jobs" || string(record.Value) != `{"n":1}` || len(id) != 36 {
		t.Fatalf("keyless JSON task: %+v id %s", record, id)
	}
	if other := kqueue.TaskID("jobs", "ping", ""); other == id {
		t.Fatal("two random ids are equal")
	}
	if _, _, err := kqueue.NewRecord("jobs", "ping", nil, kqueue.Options{Priority: "urgent"}); err != kqueue.ErrBadPriority {
		t.Fatalf("bad priority: %v", err)
	}
	schema, _ := kqueue.LoadSchema(filepath.Join(schemasDir, "send_email.avsc"))
	if _, _, err := kqueue.NewRecord("jobs", "ping", map[string]any{"subject": "no to"}, kqueue.Options{Schema: schema}); err == nil {
		t.Fatal("a payload without the required field was encoded")
	}
}
