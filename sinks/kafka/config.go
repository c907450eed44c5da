package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"

	"github.com/pktpipe/pktpipe/pipeline/stats"
)

// TopicTemplate is the default topic: one topic per event type.
const TopicTemplate = "pktpipe.{event_type}"

// Config configures a Sink. Zero values take the defaults listed.
type Config struct {
	Brokers []string // host:port, at least one
	// Topic is a topic name, or a template containing "{event_type}"
	// (default TopicTemplate), which gives every event type its own topic.
	Topic string
	// Encoder turns an event into the message value (sinks/encode).
	// Required unless Format names one that encode.New knows.
	Encoder Encoder
	Format  string // "json" (default) or "msgpack"; used when Encoder is nil

	Compression string // "zstd" (default), "lz4", "snappy", "gzip", "none"
	ClientID    string // default "pktpipe"
	// SchemaVersion is sent in every message's schema_version header.
	SchemaVersion string // default "1"
	// NoAutoCreateTopics stops the writer from asking the broker to create
	// missing topics (the Java producer asks by default, and so do we).
	NoAutoCreateTopics bool

	// kafka-go batching. A batch goes out when it holds BatchSize messages
	// or BatchBytes bytes, or BatchTimeout after its first message.
	// BatchSize is also what each batch costs however few messages it
	// holds: kafka-go allocates room for BatchSize messages (152 B each)
	// when it opens a batch, so 10000 would be 1.5 MB per batch.
	BatchSize    int           // default 1000
	BatchBytes   int           // default 1 MiB; raised to MaxMessageBytes if smaller
	BatchTimeout time.Duration // default 10ms (kafka-go's 1s default is a trap)
	// MaxMessageBytes is the largest message (key + value) sent; larger
	// events are counted failed and spilled. Keep it at or under the
	// broker's message.max.bytes (1048588 by default).
	MaxMessageBytes int // default 1000000

	// The in-flight budget: events accepted by Write and not yet
	// acknowledged by the broker (queued, sent, or waiting to be retried).
	// Write blocks while the budget is used up: that is the backpressure.
	// MaxInflightBytes counts memory, not message bytes: each event's key
	// and value buffers (their allocated capacity) plus ~300 B of
	// bookkeeping (its record and kafka-go Message).
	MaxInflight      int   // default 100000 events
	MaxInflightBytes int64 // default 64 MiB
	// MaxBlock bounds how long one Write waits for budget before it gives
	// up with an error (the broker has been unreachable that long).
	MaxBlock time.Duration // default 5m

	// Retries of batches the writer reports as failed: exponential backoff
	// with jitter between the two bounds, without a limit on attempts.
	RetryBackoffMin time.Duration // default 100ms
	RetryBackoffMax time.Duration // default 5s
	// WriterAttempts is kafka-go's own attempts per batch before it
	// reports a failure to us (it retries only network errors).
	WriterAttempts int           // default 3
	WriteTimeout   time.Duration // per produce request, default 10s

	// DrainTimeout bounds how long Close waits for outstanding acks.
	DrainTimeout time.Duration // default 10s
	// SpillPath is the JSON-lines file that receives what could not be
	// delivered. Default: pktpipe-kafka-spill-<UTC time>-<pid>.jsonl in
	// the working directory. It is created only when needed.
	SpillPath string

	TLS  *TLSConfig  // nil: plaintext
	SASL *SASLConfig // nil: no authentication

	Stats *stats.Registry
	Log   *slog.Logger

	// dial replaces the transport's dialer (tests: a broker outage without
	// restarting the broker).
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// TLSConfig enables TLS to the brokers.
type TLSConfig struct {
	CAFile             string // PEM; empty: system roots
	CertFile, KeyFile  string // PEM client certificate, optional
	ServerName         string // default: the broker's host name
	InsecureSkipVerify bool
}

// SASLConfig enables SASL authentication.
type SASLConfig struct {
	Mechanism string // "PLAIN", "SCRAM-SHA-256" or "SCRAM-SHA-512"
	Username  string
	Password  string
}

func (c *Config) defaults() {
	if c.Topic == "" {
		c.Topic = TopicTemplate
	}
	if c.Format == "" {
		c.Format = "json"
	}
	if c.Compression == "" {
		c.Compression = "zstd"
	}
	if c.ClientID == "" {
		c.ClientID = "pktpipe"
	}
	if c.SchemaVersion == "" {
		c.SchemaVersion = "1"
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 1000
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 1000000
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = 1 << 20
	}
	// kafka-go refuses a message larger than BatchBytes outright.
	c.BatchBytes = max(c.BatchBytes, c.MaxMessageBytes+1024)
	if c.BatchTimeout <= 0 {
		c.BatchTimeout = 10 * time.Millisecond
	}
	if c.MaxInflight <= 0 {
		c.MaxInflight = 100000
	}
	if c.MaxInflightBytes <= 0 {
		c.MaxInflightBytes = 64 << 20
	}
	if c.MaxBlock <= 0 {
		c.MaxBlock = 5 * time.Minute
	}
	if c.RetryBackoffMin <= 0 {
		c.RetryBackoffMin = 100 * time.Millisecond
	}
	if c.RetryBackoffMax < c.RetryBackoffMin {
		c.RetryBackoffMax = max(5*time.Second, c.RetryBackoffMin)
	}
	if c.WriterAttempts <= 0 {
		c.WriterAttempts = 3
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 10 * time.Second
	}
	if c.SpillPath == "" {
		c.SpillPath = fmt.Sprintf("pktpipe-kafka-spill-%s-%d.jsonl", time.Now().UTC().Format("20060102T150405Z"), os.Getpid())
	}
	if c.Stats == nil {
		c.Stats = stats.NewRegistry()
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
}

func compression(name string) (kafkago.Compression, error) {
	switch strings.ToLower(name) {
	case "zstd":
		return kafkago.Zstd, nil
	case "lz4":
		return kafkago.Lz4, nil
	case "snappy":
		return kafkago.Snappy, nil
	case "gzip":
		return kafkago.Gzip, nil
	case "none":
		return 0, nil
	}
	return 0, fmt.Errorf("kafka: unknown compression %q (zstd, lz4, snappy, gzip, none)", name)
}

func (t *TLSConfig) build() (*tls.Config, error) {
	if t == nil {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka: tls ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka: tls ca: no certificate in %s", t.CAFile)
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("kafka: tls: the client certificate needs both a cert and a key file")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka: tls client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func (s *SASLConfig) build() (sasl.Mechanism, error) {
	if s == nil {
		return nil, nil
	}
	switch strings.ToUpper(s.Mechanism) {
	case "PLAIN":
		return plain.Mechanism{Username: s.Username, Password: s.Password}, nil
	case "SCRAM-SHA-256":
		return newSCRAM(scramSHA256, s.Username, s.Password), nil
	case "SCRAM-SHA-512":
		return newSCRAM(scramSHA512, s.Username, s.Password), nil
	}
	return nil, fmt.Errorf("kafka: unknown SASL mechanism %q (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)", s.Mechanism)
}

// ParseURL reads a sink address:
//
//	kafka://[user:password@]host:port[,host:port...][/topic][?option=value&...]
//
// The topic may contain "{event_type}" (escaped or not); without one the
// default is TopicTemplate. Options: format, compression, client_id,
// schema_version, auto_create (true|false), batch_size, batch_bytes,
// batch_timeout, max_message_bytes, max_inflight, max_inflight_bytes,
// max_block, retry_backoff_min, retry_backoff_max, writer_attempts,
// write_timeout, drain_timeout, spill (a path); tls (true), tls_ca,
// tls_cert, tls_key, tls_server_name, tls_insecure (true); sasl (plain,
// scram-sha-256, scram-sha-512) with the user and password from the URL
// or sasl_user / sasl_password. Durations use Go syntax ("10ms", "5s").
func ParseURL(raw string) (Config, error) {
	var c Config
	rest, ok := strings.CutPrefix(raw, "kafka://")
	if !ok {
		return c, fmt.Errorf("kafka: %q: want kafka://host:port/topic", raw)
	}
	rest, query, _ := strings.Cut(rest, "?")
	hostPart, path, _ := strings.Cut(rest, "/")
	var user, pass string
	var hasUser bool
	if at := strings.LastIndexByte(hostPart, '@'); at >= 0 {
		ui, err := url.Parse("kafka://" + hostPart[:at+1] + "x")
		if err != nil {
			return c, fmt.Errorf("kafka: user info: %w", err)
		}
		user = ui.User.Username()
		pass, _ = ui.User.Password()
		hasUser = true
		hostPart = hostPart[at+1:]
	}
	for _, h := range strings.Split(hostPart, ",") {
		if h == "" {
			continue
		}
		if _, port, ok := strings.Cut(h, ":"); !ok || port == "" {
			h += ":9092"
		}
		c.Brokers = append(c.Brokers, h)
	}
	if len(c.Brokers) == 0 {
		return c, fmt.Errorf("kafka: %q: no broker address", raw)
	}
	if path != "" {
		t, err := url.PathUnescape(path)
		if err != nil {
			return c, fmt.Errorf("kafka: topic: %w", err)
		}
		c.Topic = t
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return c, fmt.Errorf("kafka: options: %w", err)
	}
	var errs []error
	str := func(k string, dst *string) {
		if v := q.Get(k); v != "" {
			*dst = v
		}
		delete(q, k)
	}
	num := func(k string, dst *int) {
		if v := q.Get(k); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				errs = append(errs, fmt.Errorf("kafka: option %s=%q: want a positive integer", k, v))
			}
			*dst = n
		}
		delete(q, k)
	}
	dur := func(k string, dst *time.Duration) {
		if v := q.Get(k); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				errs = append(errs, fmt.Errorf("kafka: option %s=%q: want a positive duration like 10ms", k, v))
			}
			*dst = d
		}
		delete(q, k)
	}
	boolean := func(k string) bool {
		v := q.Get(k)
		_, present := q[k]
		delete(q, k)
		if !present {
			return false
		}
		b, err := strconv.ParseBool(orDefault(v, "true"))
		if err != nil {
			errs = append(errs, fmt.Errorf("kafka: option %s=%q: want true or false", k, v))
		}
		return b
	}
	str("format", &c.Format)
	str("compression", &c.Compression)
	str("client_id", &c.ClientID)
	str("schema_version", &c.SchemaVersion)
	str("spill", &c.SpillPath)
	if _, set := q["auto_create"]; set {
		c.NoAutoCreateTopics = !boolean("auto_create")
	}
	num("batch_size", &c.BatchSize)
	num("batch_bytes", &c.BatchBytes)
	num("max_message_bytes", &c.MaxMessageBytes)
	num("max_inflight", &c.MaxInflight)
	var inflightBytes int
	num("max_inflight_bytes", &inflightBytes)
	c.MaxInflightBytes = int64(inflightBytes)
	num("writer_attempts", &c.WriterAttempts)
	dur("batch_timeout", &c.BatchTimeout)
	dur("max_block", &c.MaxBlock)
	dur("retry_backoff_min", &c.RetryBackoffMin)
	dur("retry_backoff_max", &c.RetryBackoffMax)
	dur("write_timeout", &c.WriteTimeout)
	dur("drain_timeout", &c.DrainTimeout)

	var t TLSConfig
	useTLS := boolean("tls")
	str("tls_ca", &t.CAFile)
	str("tls_cert", &t.CertFile)
	str("tls_key", &t.KeyFile)
	str("tls_server_name", &t.ServerName)
	t.InsecureSkipVerify = boolean("tls_insecure")
	if useTLS || t != (TLSConfig{}) {
		c.TLS = &t
	}
	var s SASLConfig
	str("sasl", &s.Mechanism)
	s.Username, s.Password = user, pass
	str("sasl_user", &s.Username)
	str("sasl_password", &s.Password)
	if s.Mechanism != "" {
		c.SASL = &s
	} else if hasUser {
		errs = append(errs, errors.New("kafka: user info in the URL needs sasl=plain|scram-sha-256|scram-sha-512"))
	}
	for k := range q {
		errs = append(errs, fmt.Errorf("kafka: unknown option %q", k))
	}
	if _, err := compression(orDefault(c.Compression, "zstd")); err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
