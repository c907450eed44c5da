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
	"path/filepath"
	"strconv"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"

	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/sinks/encode"
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

	// Batching (produce.go), per partition. A batch is made when the
	// partition's queue holds BatchSize messages or BatchBytes bytes (as
	// records, before compression), or BatchTimeout after its first
	// message once the partition has nothing in flight. librdkafka's
	// defaults are alike: batch.num.messages 10000, batch.size 1 MB.
	BatchSize    int           // default 10000
	BatchBytes   int           // default 1 MiB; raised to MaxMessageBytes+1024 if smaller
	BatchTimeout time.Duration // default 10ms
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
	// MaxBlock bounds how long one Write waits for budget. Past it (the
	// broker has acknowledged nothing for that long) the batch goes to
	// the spill file, and so does every later batch that finds no room,
	// without waiting, until the broker acknowledges again.
	MaxBlock time.Duration // default 5m

	// Retries of batches the writer reports as failed: exponential backoff
	// with jitter between the two bounds, without a limit on attempts.
	RetryBackoffMin time.Duration // default 100ms
	RetryBackoffMax time.Duration // default 5s
	// WriterAttempts is not used any more: kafka-go's Writer retried
	// network errors itself, the sink's own produce path retries every
	// failure with the backoff above. Kept so that existing URLs parse.
	WriterAttempts int           // default 3
	WriteTimeout   time.Duration // per produce request, default 10s

	// DrainTimeout bounds how long Close waits for outstanding acks.
	DrainTimeout time.Duration // default 10s
	// SpillPath is the JSON-lines file that receives what could not be
	// delivered. Default: pktpipe-kafka-spill-<UTC time>-<pid>.jsonl in
	// $STATE_DIRECTORY (systemd's StateDirectory=; the first one if it
	// lists several), else in the working directory. New checks that it
	// can be written; the file is created only when needed, and appended
	// to if it exists.
	SpillPath string

	// SpoolDir turns on the disk spool (spool.go): events the in-flight
	// budget has no room for go there instead of blocking Write, and a
	// drainer sends them once the broker accepts writes again. The
	// directory is created if missing; segments left by an earlier run
	// are sent first. "": no spool (Write blocks, then spills).
	SpoolDir string
	// SpoolMax bounds the spool's files (default 1 GiB).
	SpoolMax int64
	// SpoolFull is what happens to a batch the spool cannot take (full,
	// disk full, I/O error): SpoolBlock, SpoolDropNewest or
	// SpoolDropOldest. "": SpoolBlock, or SpoolDropOldest when Live.
	SpoolFull string
	// The spool's fsync: every SpoolSyncInterval (default 1s) and after
	// SpoolSyncBytes written (default 8 MiB). Negative bytes: every batch.
	SpoolSyncInterval time.Duration
	SpoolSyncBytes    int64
	// Live says the source is a live capture, which cannot be slowed
	// down: blocking would only move the loss to the kernel's ring. It
	// picks SpoolFull's default.
	Live bool

	// Ctx, when set, is the run's stop signal (the first SIGTERM): once it
	// is done, Write no longer waits for budget and spills instead, so
	// that the drain ends within DrainTimeout. Nil: never.
	Ctx context.Context

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
		c.BatchSize = 10000
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 1000000
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = 1 << 20
	}
	// A message must fit in a batch.
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
		c.SpillPath = filepath.Join(stateDir(),
			fmt.Sprintf("pktpipe-kafka-spill-%s-%d.jsonl", time.Now().UTC().Format("20060102T150405Z"), os.Getpid()))
	}
	if c.SpoolMax <= 0 {
		c.SpoolMax = 1 << 30
	}
	if c.SpoolFull == "" {
		c.SpoolFull = SpoolBlock
		if c.Live {
			c.SpoolFull = SpoolDropOldest
		}
	}
	if c.SpoolSyncInterval <= 0 {
		c.SpoolSyncInterval = time.Second
	}
	if c.SpoolSyncBytes == 0 {
		c.SpoolSyncBytes = 8 << 20
	}
	if c.SpoolSyncBytes < 0 {
		c.SpoolSyncBytes = 1
	}
	if c.Ctx == nil {
		c.Ctx = context.Background()
	}
	if c.Stats == nil {
		c.Stats = stats.NewRegistry()
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
}

// stateDir is where the default spill file goes: systemd's
// $STATE_DIRECTORY (the first of a colon-separated list) or "" (the
// working directory, which under a unit is / and read-only with
// ProtectSystem=strict).
func stateDir() string {
	d, _, _ := strings.Cut(os.Getenv("STATE_DIRECTORY"), ":")
	return d
}

// What the spool does with a batch it cannot take (Config.SpoolFull).
const (
	SpoolBlock      = "block"       // wait for room (backpressure), then spill after MaxBlock
	SpoolDropNewest = "drop-newest" // drop the batch
	SpoolDropOldest = "drop-oldest" // remove the oldest segment to make room
)

// minSpoolMax is the smallest spool: a few segments of the smallest size.
const minSpoolMax = 256 << 10

// checkSpool makes sure the spool directory can be written (or made), at
// start: a probe file is created and removed.
func checkSpool(dir string) error {
	probeIn := dir
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		probeIn = filepath.Dir(dir) // MkdirAll would make it there
		if st, err := os.Stat(probeIn); err != nil || !st.IsDir() {
			return registry.Usagef("--kafka-spool %s: its parent directory does not exist", dir)
		}
	case err != nil:
		return registry.Usagef("--kafka-spool %s: %w", dir, err)
	case !st.IsDir():
		return registry.Usagef("--kafka-spool %s: not a directory", dir)
	}
	f, err := os.CreateTemp(probeIn, ".pktpipe-spool-probe-*")
	if err != nil {
		return registry.Usagef("--kafka-spool %s: cannot be written: %w", dir, err)
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

// built is what New makes of a checked Config.
type built struct {
	enc   Encoder
	codec kafkago.Compression
	tls   *tls.Config
	sasl  sasl.Mechanism
}

// build checks c (with its defaults) as New does, without contacting
// anything: the encoder, compression, TLS files and SASL mechanism. Its
// errors are usage errors.
func (c *Config) build() (built, error) {
	var b built
	if len(c.Brokers) == 0 {
		return b, registry.Usagef("kafka: no broker address")
	}
	var err error
	if b.enc = c.Encoder; b.enc == nil {
		if b.enc, err = encode.New(c.Format); err != nil {
			return b, registry.Usagef("kafka: %w", err)
		}
	}
	if b.codec, err = compression(c.Compression); err != nil {
		return b, registry.Usage(err)
	}
	if b.tls, err = c.TLS.build(); err != nil {
		return b, registry.Usage(err)
	}
	if b.sasl, err = c.SASL.build(); err != nil {
		return b, registry.Usage(err)
	}
	switch c.SpoolFull {
	case SpoolBlock, SpoolDropNewest, SpoolDropOldest:
	default:
		return b, registry.Usagef("--kafka-spool-full %q: want block, drop-newest or drop-oldest", c.SpoolFull)
	}
	if c.SpoolDir != "" && c.SpoolMax < minSpoolMax {
		return b, registry.Usagef("--kafka-spool-max %d: want at least %d (256K)", c.SpoolMax, minSpoolMax)
	}
	return b, nil
}

// checkSpill makes sure the spill file can be written, at start rather
// than when the events are already in it: an existing file is opened for
// appending, otherwise the file is created and removed again.
func checkSpill(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	created := err == nil
	if errors.Is(err, os.ErrExist) {
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	}
	if err != nil {
		return registry.Usagef("kafka: the spill file cannot be written (%w): set --kafka-spill or spill=, or run where the working directory or $STATE_DIRECTORY is writable", err)
	}
	f.Close()
	if created {
		os.Remove(path)
	}
	return nil
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
//	kafka://[user[:password]@]host:port[,host:port...][/topic][?option=value&...]
//
// The topic may contain "{event_type}" (escaped or not); without one the
// default is TopicTemplate. A host without a port gets 9092; an IPv6
// address goes in brackets. Options: format, compression, client_id,
// schema_version, auto_create (true|false), batch_size, batch_bytes,
// batch_timeout, max_message_bytes, max_inflight, max_inflight_bytes,
// max_block, retry_backoff_min, retry_backoff_max, writer_attempts,
// write_timeout, drain_timeout, spill (a path); tls (true), tls_ca,
// tls_cert, tls_key, tls_server_name, tls_insecure (true); sasl (plain,
// scram-sha-256, scram-sha-512) with the user and password from the URL
// or sasl_user / sasl_password (the password is better given by
// --kafka-password-file or $PKTPIPE_KAFKA_PASSWORD: a URL shows in ps).
// Durations use Go syntax ("10ms", "5s").
//
// The user information ends at the last '@' before the query, so a
// password may hold '/' and '@' as they are; '%', '?' and '&' must be
// escaped (%25, %3F, %26). Every error is a usage error, and none quotes
// the password.
func ParseURL(raw string) (Config, error) {
	var c Config
	rest, ok := strings.CutPrefix(raw, "kafka://")
	if !ok {
		return c, registry.Usagef("kafka: %q: want kafka://host:port/topic", Redact(raw))
	}
	rest, query, _ := strings.Cut(rest, "?")
	var user, pass string
	hasUser := false
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		var err error
		if user, pass, err = parseUserInfo(rest[:at]); err != nil {
			return c, err
		}
		hasUser = true
		rest = rest[at+1:]
	}
	hostPart, path, _ := strings.Cut(rest, "/")
	brokers, err := parseBrokers(hostPart)
	if err != nil {
		return c, err
	}
	if len(brokers) == 0 {
		return c, registry.Usagef("kafka: %q: no broker address", Redact(raw))
	}
	c.Brokers = brokers
	if path != "" {
		t, err := url.PathUnescape(path)
		if err != nil {
			return c, registry.Usagef("kafka: topic: %w", err)
		}
		c.Topic = t
	}
	q, err := parseQuery(query)
	if err != nil {
		return c, err
	}
	o := optionReader{q: q}
	o.general(&c)
	o.tls(&c)
	if s := o.sasl(user, pass); s != nil {
		c.SASL = s
	} else if hasUser {
		o.errs = append(o.errs, errors.New("kafka: user info in the URL needs sasl=plain|scram-sha-256|scram-sha-512"))
	}
	for k := range q {
		o.errs = append(o.errs, fmt.Errorf("kafka: unknown option %q", k))
	}
	if _, err := compression(orDefault(c.Compression, "zstd")); err != nil {
		o.errs = append(o.errs, err)
	}
	return c, registry.Usage(errors.Join(o.errs...))
}

// parseUserInfo splits and unescapes "user[:password]". Its errors never
// quote what they parse.
func parseUserInfo(ui string) (user, pass string, err error) {
	u, p, _ := strings.Cut(ui, ":")
	if user, err = url.PathUnescape(u); err == nil {
		pass, err = url.PathUnescape(p)
	}
	if err != nil {
		return "", "", registry.Usagef("kafka: user info: a bad %%-escape (escape '%%' in the user and password as %%25)")
	}
	return user, pass, nil
}

// parseBrokers reads "host:port,host:port"; a host without a port gets
// 9092. A port must be a number from 1 to 65535: a bad one would
// otherwise be retried as a broker that does not answer.
func parseBrokers(hostPart string) ([]string, error) {
	var out []string
	for _, h := range strings.Split(hostPart, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if !strings.Contains(h, ":") || (strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]")) {
			h = net.JoinHostPort(strings.Trim(h, "[]"), "9092")
		}
		host, port, err := net.SplitHostPort(h)
		if err != nil {
			return nil, registry.Usagef("kafka: broker %q: want host:port ([addr]:port for IPv6)", h)
		}
		if host == "" {
			return nil, registry.Usagef("kafka: broker %q: no host", h)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, registry.Usagef("kafka: broker %q: port %q is not a number from 1 to 65535", h, port)
		}
		out = append(out, h)
	}
	return out, nil
}

// parseQuery is url.ParseQuery with errors that name the option but never
// quote a value (sasl_password's).
func parseQuery(query string) (url.Values, error) {
	q := url.Values{}
	for _, kv := range strings.Split(query, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			return nil, registry.Usagef("kafka: an option name has a bad %%-escape")
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			return nil, registry.Usagef("kafka: option %s: a bad %%-escape in its value (escape '%%' as %%25)", key)
		}
		q[key] = append(q[key], val)
	}
	return q, nil
}

// optionReader takes options out of q, collecting errors.
type optionReader struct {
	q    url.Values
	errs []error
}

func (o *optionReader) str(k string, dst *string) {
	if v := o.q.Get(k); v != "" {
		*dst = v
	}
	delete(o.q, k)
}

func (o *optionReader) num(k string, dst *int) {
	if v := o.q.Get(k); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			o.errs = append(o.errs, fmt.Errorf("kafka: option %s=%q: want a positive integer", k, v))
		}
		*dst = n
	}
	delete(o.q, k)
}

func (o *optionReader) dur(k string, dst *time.Duration) {
	if v := o.q.Get(k); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			o.errs = append(o.errs, fmt.Errorf("kafka: option %s=%q: want a positive duration like 10ms", k, v))
		}
		*dst = d
	}
	delete(o.q, k)
}

// boolean is false when k is absent and true when it has no value.
func (o *optionReader) boolean(k string) bool {
	v := o.q.Get(k)
	_, present := o.q[k]
	delete(o.q, k)
	if !present {
		return false
	}
	b, err := strconv.ParseBool(orDefault(v, "true"))
	if err != nil {
		o.errs = append(o.errs, fmt.Errorf("kafka: option %s=%q: want true or false", k, v))
	}
	return b
}

func (o *optionReader) general(c *Config) {
	o.str("format", &c.Format)
	o.str("compression", &c.Compression)
	o.str("client_id", &c.ClientID)
	o.str("schema_version", &c.SchemaVersion)
	o.str("spill", &c.SpillPath)
	if _, set := o.q["auto_create"]; set {
		c.NoAutoCreateTopics = !o.boolean("auto_create")
	}
	o.num("batch_size", &c.BatchSize)
	o.num("batch_bytes", &c.BatchBytes)
	o.num("max_message_bytes", &c.MaxMessageBytes)
	o.num("max_inflight", &c.MaxInflight)
	var inflightBytes int
	o.num("max_inflight_bytes", &inflightBytes)
	c.MaxInflightBytes = int64(inflightBytes)
	o.num("writer_attempts", &c.WriterAttempts)
	o.dur("batch_timeout", &c.BatchTimeout)
	o.dur("max_block", &c.MaxBlock)
	o.dur("retry_backoff_min", &c.RetryBackoffMin)
	o.dur("retry_backoff_max", &c.RetryBackoffMax)
	o.dur("write_timeout", &c.WriteTimeout)
	o.dur("drain_timeout", &c.DrainTimeout)
}

func (o *optionReader) tls(c *Config) {
	var t TLSConfig
	useTLS := o.boolean("tls")
	o.str("tls_ca", &t.CAFile)
	o.str("tls_cert", &t.CertFile)
	o.str("tls_key", &t.KeyFile)
	o.str("tls_server_name", &t.ServerName)
	t.InsecureSkipVerify = o.boolean("tls_insecure")
	if useTLS || t != (TLSConfig{}) {
		c.TLS = &t
	}
}

// sasl returns the SASL settings, nil without sasl=.
func (o *optionReader) sasl(user, pass string) *SASLConfig {
	s := SASLConfig{Username: user, Password: pass}
	o.str("sasl", &s.Mechanism)
	o.str("sasl_user", &s.Username)
	o.str("sasl_password", &s.Password)
	if s.Mechanism == "" {
		return nil
	}
	return &s
}

// redacted replaces a password in what Redact returns.
const redacted = "xxxxx"

// Redact returns a kafka:// URL fit for logs and messages: the password in
// the user information and the value of sasl_password are replaced by
// "xxxxx". It follows ParseURL's reading, and works on URLs that ParseURL
// refuses.
func Redact(raw string) string {
	rest, ok := strings.CutPrefix(raw, "kafka://")
	if !ok {
		return raw
	}
	pre, query, hasQuery := strings.Cut(rest, "?")
	if at := strings.LastIndexByte(pre, '@'); at >= 0 {
		if user, _, hasPass := strings.Cut(pre[:at], ":"); hasPass {
			pre = user + ":" + redacted + pre[at:]
		}
	}
	if !hasQuery {
		return "kafka://" + pre
	}
	parts := strings.Split(query, "&")
	for i, kv := range parts {
		k, _, _ := strings.Cut(kv, "=")
		if key, err := url.QueryUnescape(k); err != nil || key == "sasl_password" {
			parts[i] = k + "=" + redacted
		}
	}
	return "kafka://" + pre + "?" + strings.Join(parts, "&")
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
