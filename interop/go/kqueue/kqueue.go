// Package kqueue enqueues tasks to a kqueue queue from Go: one Kafka record per task, the payload
// Avro single-object encoded (C3 01, CRC-64-AVRO fingerprint little-endian, body) and the task's
// metadata in the documented kq-* headers. Use it with a franz-go client left on its default
// partitioner: that hashes keys with murmur2 like Java's and kqueue's, so a key lands on the
// partition every other producer and kqueue's own topics use for it.
//
//	schema, _ := kqueue.LoadSchema("schemas/send_email.avsc")
//	client, _ := kgo.NewClient(kgo.SeedBrokers("localhost:9092"))
//	id, err := kqueue.Enqueue(ctx, client, "email", "send_email",
//		map[string]any{"to": "a@b.c"}, kqueue.Options{Schema: schema, Key: "user-123"})
package kqueue

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Header names: the contract in kqueue's docs/design.md ("Headers").
const (
	HeaderID             = "kq-id"
	HeaderType           = "kq-type"
	HeaderAttempt        = "kq-attempt"
	HeaderMaxAttempts    = "kq-max-attempts"
	HeaderEnqueuedAt     = "kq-enqueued-at"
	HeaderPriority       = "kq-priority"
	HeaderIdempotencyKey = "kq-idempotency-key"
	HeaderContentType    = "kq-content-type"
	HeaderTraceparent    = "traceparent"
	HeaderTracestate     = "tracestate"
)

// avroAPI writes arrays and maps as Java's GenericDatumWriter does: one block, counted, with no
// byte-size prefix (hamba's default writes blocks of 100 with sizes: valid Avro, other bytes).
var avroAPI = avro.Config{DisableBlockSizeHeader: true, BlockLength: 1 << 30}.Freeze()

// Schema is a parsed Avro schema with its single-object header (C3 01 + fingerprint) ready.
type Schema struct {
	schema avro.Schema
	header []byte
}

// ParseSchema parses an .avsc document.
func ParseSchema(text string) (*Schema, error) {
	s, err := avro.Parse(text)
	if err != nil {
		return nil, fmt.Errorf("kqueue: bad Avro schema: %w", err)
	}
	// The fingerprint goes on the wire little-endian, as Java's BinaryMessageEncoder writes it.
	fp, err := s.FingerprintUsing(avro.CRC64AvroLE)
	if err != nil {
		return nil, fmt.Errorf("kqueue: fingerprint: %w", err)
	}
	return &Schema{schema: s, header: append([]byte{0xC3, 0x01}, fp...)}, nil
}

// LoadSchema reads and parses an .avsc file.
func LoadSchema(path string) (*Schema, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kqueue: %w", err)
	}
	return ParseSchema(string(text))
}

// Fingerprint is the schema's 8 fingerprint bytes as they appear on the wire.
func (s *Schema) Fingerprint() []byte { return bytes.Clone(s.header[2:]) }

// Encode returns v's Avro single-object encoding (v: a struct with avro tags or a map[string]any).
func (s *Schema) Encode(v any) ([]byte, error) {
	body, err := avroAPI.Marshal(s.schema, v)
	if err != nil {
		return nil, fmt.Errorf("kqueue: payload does not fit the schema: %w", err)
	}
	return append(bytes.Clone(s.header), body...), nil
}

// Options of one task. Only Schema (for Avro) matters to most callers, and Key for per-key order.
type Options struct {
	Schema         *Schema // Avro single-object payload; nil sends the payload as JSON
	Key            string  // ordering key; "" sends a keyless record
	ID             string  // task id; "" makes one (see TaskID)
	MaxAttempts    int     // 0 leaves it to the worker's task definition
	Priority       string  // "high", "low" or "normal"/"" (the lane topics Q.high, Q.low, Q)
	IdempotencyKey string
	Traceparent    string // W3C trace context, passed on as it is
	Tracestate     string
	TopicPrefix    string // the kqueue App's topic_prefix, if it has one
}

// ErrBadPriority is returned for a priority other than high, normal, low or "".
var ErrBadPriority = errors.New("kqueue: priority must be high, normal or low")

// NewRecord builds the task's record without sending it (for client.Produce with a callback);
// it returns the record and the task id.
func NewRecord(queue, taskType string, payload any, opts Options) (*kgo.Record, string, error) {
	if queue == "" || taskType == "" {
		return nil, "", errors.New("kqueue: queue and task type are required")
	}
	topic := opts.TopicPrefix + queue
	switch opts.Priority {
	case "", "normal":
	case "high", "low":
		topic += "." + opts.Priority
	default:
		return nil, "", ErrBadPriority
	}
	value, contentType, err := encodePayload(payload, opts.Schema)
	if err != nil {
		return nil, "", err
	}
	id := opts.ID
	if id == "" {
		id = TaskID(queue, taskType, opts.IdempotencyKey)
	}
	headers := []kgo.RecordHeader{
		{Key: HeaderID, Value: []byte(id)},
		{Key: HeaderType, Value: []byte(taskType)},
		{Key: HeaderAttempt, Value: []byte("1")},
		{Key: HeaderEnqueuedAt, Value: []byte(strconv.FormatInt(time.Now().UnixMilli(), 10))},
		{Key: HeaderContentType, Value: []byte(contentType)},
	}
	add := func(name, value string) {
		if value != "" {
			headers = append(headers, kgo.RecordHeader{Key: name, Value: []byte(value)})
		}
	}
	if opts.MaxAttempts > 0 {
		add(HeaderMaxAttempts, strconv.Itoa(opts.MaxAttempts))
	}
	if opts.Priority != "" {
		add(HeaderPriority, opts.Priority)
	}
	add(HeaderIdempotencyKey, opts.IdempotencyKey)
	add(HeaderTraceparent, opts.Traceparent)
	add(HeaderTracestate, opts.Tracestate)
	record := &kgo.Record{Topic: topic, Value: value, Headers: headers}
	if opts.Key != "" {
		record.Key = []byte(opts.Key)
	}
	return record, id, nil
}

// Enqueue sends one task and waits until Kafka has it (acks=all, idempotent: franz-go's defaults);
// it returns the task id. For many tasks, build records with NewRecord and client.Produce them.
func Enqueue(ctx context.Context, client *kgo.Client, queue, taskType string, payload any, opts Options) (string, error) {
	record, id, err := NewRecord(queue, taskType, payload, opts)
	if err != nil {
		return "", err
	}
	if err := client.ProduceSync(ctx, record).FirstErr(); err != nil {
		return "", fmt.Errorf("kqueue: enqueue to %s: %w", record.Topic, err)
	}
	return id, nil
}

func encodePayload(payload any, schema *Schema) ([]byte, string, error) {
	if schema != nil {
		value, err := schema.Encode(payload)
		return value, "avro", err
	}
	value, err := json.Marshal(payload)
	if err != nil {
		return nil, "", fmt.Errorf("kqueue: payload is not JSON: %w", err)
	}
	return value, "json", nil
}

// idempotentNamespace is kqueue's namespace for idempotent task ids (kqueue/core/dedup.py).
var idempotentNamespace = [16]byte{0xa7, 0xd4, 0xc1, 0xe2, 0x93, 0xb8, 0x5f, 0x06, 0x8e, 0x2d, 0x4c, 0x1b, 0x7a, 0x9e, 0x3f, 0x50}

// TaskID is the id kqueue gives a new task: with an idempotency key, the UUIDv5 every producer
// derives from (queue, type, key), so a retried or racing enqueue in any language names the same
// task; without one, a random UUID.
func TaskID(queue, taskType, idempotencyKey string) string {
	if idempotencyKey == "" {
		return newUUID()
	}
	h := sha1.New()
	h.Write(idempotentNamespace[:])
	h.Write([]byte(queue + "\x00" + taskType + "\x00" + idempotencyKey))
	var b [16]byte
	copy(b[:], h.Sum(nil))
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	return formatUUID(b)
}

// newUUID makes a random (version 4) UUID, as kqueue's own task ids are.
func newUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return formatUUID(b)
}

func formatUUID(b [16]byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
