package kafka

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/registry"
)

// PasswordEnv is the environment variable that holds the SASL password
// when neither the URL nor --kafka-password-file gives one. Unlike the
// URL, neither shows in ps or /proc/PID/cmdline.
const PasswordEnv = "PKTPIPE_KAFKA_PASSWORD"

func init() {
	pipeline.RegisterSink(pipeline.SinkSpec{
		Scheme:     "kafka",
		Usage:      "kafka://HOST:PORT[,HOST:PORT]/TOPIC[?compression=zstd&...]",
		NewOptions: func() registry.Options { return &Options{} },
		Check: func(target string, opts registry.Options) error {
			c, err := configFor(target, opts.(*Options), pipeline.SinkEnv{})
			if err != nil {
				return err
			}
			c.defaults()
			if _, err := c.build(); err != nil {
				return err
			}
			if err := checkSpill(c.SpillPath); err != nil {
				return err
			}
			if c.SpoolDir != "" {
				return checkSpool(c.SpoolDir)
			}
			return nil
		},
		Open: func(target string, opts registry.Options, env pipeline.SinkEnv) (pipeline.Sink, error) {
			c, err := configFor(target, opts.(*Options), env)
			if err != nil {
				return nil, err
			}
			return New(c)
		},
		Redact: Redact,
	})
}

// Options are the Kafka sink's command-line settings; the rest is in the
// kafka:// URL (ParseURL).
type Options struct {
	TopicTemplate string        // overrides the URL's topic
	DrainTimeout  time.Duration // overrides drain_timeout when > 0
	Spill         string        // overrides spill=
	// PasswordFile holds the SASL password (one line; a final newline is
	// not part of it), e.g. a systemd credential: --kafka-password-file
	// %d/kafka-password with LoadCredential=kafka-password:/etc/....
	PasswordFile string

	// The disk spool (Config.SpoolDir and the rest).
	SpoolDir          string
	SpoolMax          registry.ByteSize
	SpoolFull         string
	SpoolSyncInterval time.Duration
	SpoolSyncBytes    registry.ByteSize
}

// RegisterFlags declares the flags (and so the config keys
// kafka_topic_template, drain_timeout, kafka_spill, kafka_password_file).
func (o *Options) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.TopicTemplate, "kafka-topic-template", "", "Kafka sink: topic, or a template such as 'pktpipe.{event_type}' (overrides the URL's topic)")
	fs.DurationVar(&o.DrainTimeout, "drain-timeout", 0, "Kafka sink: how long to wait at exit for the broker to acknowledge what was sent; the rest goes to the spill file (0 = 10s)")
	fs.StringVar(&o.Spill, "kafka-spill", "", "Kafka sink: spill file for events not delivered (default pktpipe-kafka-spill-TIME-PID.jsonl in $STATE_DIRECTORY, else the working directory)")
	fs.StringVar(&o.PasswordFile, "kafka-password-file", "", "Kafka sink: read the SASL password from `FILE` (else $"+PasswordEnv+" or the URL)")
	fs.StringVar(&o.SpoolDir, "kafka-spool", "", "Kafka sink: disk spool `DIR` for events the broker cannot take yet (slow or down); sent in order once it can, and first at the next start")
	fs.Var(&o.SpoolMax, "kafka-spool-max", "Kafka sink: size limit of the spool (0 = 1G)")
	fs.StringVar(&o.SpoolFull, "kafka-spool-full", "", "Kafka sink: when the spool is full or cannot be written: block, drop-newest or drop-oldest (default block for -r, drop-oldest for live capture)")
	fs.DurationVar(&o.SpoolSyncInterval, "kafka-spool-sync-interval", 0, "Kafka sink: fsync the spool at least this often (0 = 1s)")
	fs.Var(&o.SpoolSyncBytes, "kafka-spool-sync-bytes", "Kafka sink: fsync the spool after this many bytes (0 = 8M)")
}

// Validate checks the options on their own.
func (o *Options) Validate() error {
	if o.DrainTimeout < 0 {
		return registry.Usagef("--drain-timeout %s: want 0 (the default) or more", o.DrainTimeout)
	}
	switch o.SpoolFull {
	case "", SpoolBlock, SpoolDropNewest, SpoolDropOldest:
	default:
		return registry.Usagef("--kafka-spool-full %q: want block, drop-newest or drop-oldest", o.SpoolFull)
	}
	if o.SpoolMax < 0 || o.SpoolSyncBytes < 0 || o.SpoolSyncInterval < 0 {
		return registry.Usagef("--kafka-spool-max, --kafka-spool-sync-bytes, --kafka-spool-sync-interval: want 0 (the default) or more")
	}
	return nil
}

// configFor is the sink's Config for target with the options and env
// applied, as Open makes it: the format from the URL, else env's; the
// flags over the URL's topic, drain_timeout and spill; the password from
// the file or the environment.
func configFor(target string, o *Options, env pipeline.SinkEnv) (Config, error) {
	if o == nil {
		o = &Options{}
	}
	if err := o.Validate(); err != nil {
		return Config{}, err
	}
	c, err := ParseURL(target)
	if err != nil {
		return c, err
	}
	if c.Format == "" {
		c.Format = env.Format
	}
	if o.TopicTemplate != "" {
		c.Topic = o.TopicTemplate
	}
	if o.DrainTimeout > 0 {
		c.DrainTimeout = o.DrainTimeout
	}
	if o.Spill != "" {
		c.SpillPath = o.Spill
	}
	if err := c.setPassword(o.PasswordFile, os.Getenv(PasswordEnv)); err != nil {
		return c, err
	}
	c.SpoolDir, c.SpoolMax, c.SpoolFull = o.SpoolDir, int64(o.SpoolMax), o.SpoolFull
	c.SpoolSyncInterval, c.SpoolSyncBytes = o.SpoolSyncInterval, int64(o.SpoolSyncBytes)
	c.Live = env.Live
	c.Ctx, c.Stats, c.Log = env.Ctx, env.Stats, env.Log
	return c, nil
}

// setPassword fills in the SASL password: the URL's, else file's, else
// fromEnv. Giving it in both the URL and a file is an error, and so is
// SASL without any password. No error quotes it.
func (c *Config) setPassword(file, fromEnv string) error {
	if c.SASL == nil {
		if file != "" {
			return registry.Usagef("--kafka-password-file: the kafka:// URL has no sasl= option")
		}
		return nil
	}
	switch {
	case file != "" && c.SASL.Password != "":
		return registry.Usagef("kafka: the SASL password is given twice, in the URL and by --kafka-password-file")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return registry.Usagef("--kafka-password-file: %w", err)
		}
		p := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if p == "" {
			return registry.Usagef("--kafka-password-file %s: empty", file)
		}
		if strings.ContainsAny(p, "\r\n") {
			return registry.Usagef("--kafka-password-file %s: more than one line", file)
		}
		c.SASL.Password = p
	case c.SASL.Password == "":
		c.SASL.Password = fromEnv
	}
	if c.SASL.Password == "" {
		return registry.Usage(errors.New("kafka: sasl= needs a password: --kafka-password-file FILE, $" + PasswordEnv + ", or the URL"))
	}
	if c.SASL.Username == "" {
		return registry.Usage(fmt.Errorf("kafka: sasl= needs a user: kafka://USER@HOST/... or sasl_user="))
	}
	return nil
}
