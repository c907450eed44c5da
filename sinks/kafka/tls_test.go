package kafka

// TLS and SASL against the real broker's SASL_SSL and SSL listeners
// (test/kafka: CA and certificates made by kafka.sh with openssl, SCRAM
// users written at storage-format time). The sink is configured through
// ParseURL, as a user would; kcat reads everything back over the same
// listener.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/stats"
)

// tlsEnv is `kafka.sh env`: the TLS listeners, certificate paths and the
// test user.
func tlsEnv(t *testing.T) map[string]string {
	t.Helper()
	needBroker(t)
	testenv.Need(t, kafkaSh != "", "a broker started by test/kafka/kafka.sh (its TLS listeners and certificates)")
	out, err := exec.Command("bash", kafkaSh, "env").Output()
	if err != nil {
		t.Fatalf("kafka.sh env: %v", err)
	}
	env := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	for _, k := range []string{"KAFKA_SASL_SSL", "KAFKA_SSL", "KAFKA_CA", "KAFKA_CLIENT_CERT", "KAFKA_CLIENT_KEY", "KAFKA_SASL_USER", "KAFKA_SASL_PASSWORD"} {
		if env[k] == "" {
			t.Fatalf("kafka.sh env: no %s in\n%s", k, out)
		}
	}
	return env
}

// kcatTLS are kcat's options for a listener: PLAIN for SASL_SSL (Debian
// 12's kcat links librdkafka 2.0.2, whose SCRAM Kafka 4 rejects:
// confluentinc/librdkafka#4895), the client certificate for SSL.
func kcatTLS(env map[string]string, listener string) []string {
	if listener == "SASL_SSL" {
		return []string{"-b", env["KAFKA_SASL_SSL"], "-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=PLAIN",
			"-X", "sasl.username=" + env["KAFKA_SASL_USER"], "-X", "sasl.password=" + env["KAFKA_SASL_PASSWORD"],
			"-X", "ssl.ca.location=" + env["KAFKA_CA"]}
	}
	return []string{"-b", env["KAFKA_SSL"], "-X", "security.protocol=SSL", "-X", "ssl.ca.location=" + env["KAFKA_CA"],
		"-X", "ssl.certificate.location=" + env["KAFKA_CLIENT_CERT"], "-X", "ssl.key.location=" + env["KAFKA_CLIENT_KEY"]}
}

func consumeTLS(t *testing.T, env map[string]string, listener, topic string, n int) []kmsg {
	t.Helper()
	args := append(kcatTLS(env, listener), "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-c", fmt.Sprint(n), "-f", "%p\t%k\t%h\t%s\n")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "kcat", args...).Output()
	if err != nil {
		t.Fatalf("kcat -C %s over %s: %v", topic, listener, err)
	}
	var msgs []kmsg
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(nil, 8<<20)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), "\t", 4)
		if len(f) != 4 {
			t.Fatalf("kcat line %q", sc.Text())
		}
		msgs = append(msgs, kmsg{0, f[1], f[3], f[2]})
	}
	return msgs
}

// tlsSink makes a sink from a kafka:// URL, as the command does (the
// registered Open).
func tlsSink(t *testing.T, raw string, reg *stats.Registry) *Sink {
	t.Helper()
	s, _ := tlsSinkOpts(t, raw, &Options{}, reg)
	return s
}

// tlsSinkOpts is tlsSink with the command's options; it returns the log.
func tlsSinkOpts(t *testing.T, raw string, opts *Options, reg *stats.Registry) (*Sink, *logBuffer) {
	t.Helper()
	if opts.Spill == "" && !strings.Contains(raw, "spill=") {
		opts.Spill = filepath.Join(t.TempDir(), "spill.jsonl")
	}
	lb := &logBuffer{}
	sk, err := kafkaSpec(t).Open(raw, opts, pipeline.SinkEnv{Ctx: context.Background(), Stats: reg, Log: lb.logger()})
	if err != nil {
		t.Fatalf("Open(%s): %v", Redact(raw), err)
	}
	return sk.(*Sink), lb
}

// Every mechanism of the SASL_SSL listener, and the SSL listener with a
// client certificate: all events arrive, intact, read back by kcat.
func TestTLSAndSASLDeliver(t *testing.T) {
	env := tlsEnv(t)
	user, pass := url.QueryEscape(env["KAFKA_SASL_USER"]), url.QueryEscape(env["KAFKA_SASL_PASSWORD"])
	ca := url.QueryEscape(env["KAFKA_CA"])
	const n = 2000
	for _, c := range []struct {
		name, listener, url string
	}{
		{"sasl_ssl-scram-sha-256", "SASL_SSL", fmt.Sprintf("kafka://%s:%s@%s/TOPIC?tls=true&tls_ca=%s&sasl=scram-sha-256", user, pass, env["KAFKA_SASL_SSL"], ca)},
		{"sasl_ssl-scram-sha-512", "SASL_SSL", fmt.Sprintf("kafka://%s/TOPIC?tls_ca=%s&sasl=scram-sha-512&sasl_user=%s&sasl_password=%s", env["KAFKA_SASL_SSL"], ca, user, pass)},
		{"sasl_ssl-plain", "SASL_SSL", fmt.Sprintf("kafka://%s:%s@%s/TOPIC?tls=true&tls_ca=%s&sasl=plain", user, pass, env["KAFKA_SASL_SSL"], ca)},
		{"ssl-client-cert", "SSL", fmt.Sprintf("kafka://%s/TOPIC?tls_ca=%s&tls_cert=%s&tls_key=%s", env["KAFKA_SSL"], ca,
			url.QueryEscape(env["KAFKA_CLIENT_CERT"]), url.QueryEscape(env["KAFKA_CLIENT_KEY"]))},
	} {
		t.Run(c.name, func(t *testing.T) {
			topic := uniqueTopic(c.name)
			reg := stats.NewRegistry()
			s := tlsSink(t, strings.Replace(c.url, "TOPIC", topic, 1), reg)
			evs := flows(1, n)
			writeAll(t, s, evs)
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if got := s.m.delivered.Load(); got != n {
				t.Fatalf("delivered %d, want %d", got, n)
			}
			if l := reg.Losses(); len(l) != 0 {
				t.Fatalf("losses: %+v", l)
			}
			want := map[int]string{}
			for _, ev := range evs {
				want[int(ev.Head().FlowID)] = string(s.enc.Append(nil, ev))
			}
			msgs := consumeTLS(t, env, c.listener, topic, n)
			seen := map[int]bool{}
			for _, m := range msgs {
				id := flowID(t, []byte(m.value))
				if seen[id] || m.value != want[id] || m.key != evs[id-1].Head().CommunityID {
					t.Fatalf("flow %d: duplicate, or value/key differ: %s / %s", id, m.key, m.value)
				}
				seen[id] = true
			}
			if len(seen) != n {
				t.Fatalf("kcat read %d distinct events over %s, want %d", len(seen), c.listener, n)
			}
			t.Logf("%d events over %s, read back by kcat over %s", n, c.name, c.listener)
		})
	}
}

// otherCA writes a CA certificate that signed nothing the broker has.
func otherCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "not the pktpipe test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A wrong password, an untrusted CA, or no client certificate: nothing is
// delivered, Close says why in plain words, and every event is in the
// spill file.
func TestTLSAndSASLRefused(t *testing.T) {
	env := tlsEnv(t)
	user, pass := url.QueryEscape(env["KAFKA_SASL_USER"]), url.QueryEscape(env["KAFKA_SASL_PASSWORD"])
	ca := url.QueryEscape(env["KAFKA_CA"])
	const n = 500
	for _, c := range []struct {
		name, url, want string
	}{
		{"wrong-password-scram-sha-512", fmt.Sprintf("kafka://%s:wrong@%s/TOPIC?tls_ca=%s&sasl=scram-sha-512", user, env["KAFKA_SASL_SSL"], ca), "SASL authentication failed"},
		{"wrong-password-plain", fmt.Sprintf("kafka://%s:wrong@%s/TOPIC?tls_ca=%s&sasl=plain", user, env["KAFKA_SASL_SSL"], ca), "SASL authentication failed"},
		{"untrusted-ca", fmt.Sprintf("kafka://%s:%s@%s/TOPIC?tls_ca=%s&sasl=scram-sha-512", user, pass, env["KAFKA_SASL_SSL"], url.QueryEscape(otherCA(t))), "certificate is not trusted"},
		{"no-client-cert", fmt.Sprintf("kafka://%s/TOPIC?tls_ca=%s", env["KAFKA_SSL"], ca), "TLS handshake"},
	} {
		t.Run(c.name, func(t *testing.T) {
			topic := uniqueTopic(c.name)
			reg := stats.NewRegistry()
			s, lb := tlsSinkOpts(t, strings.Replace(c.url, "TOPIC", topic, 1)+"&drain_timeout=3s&retry_backoff_max=500ms", &Options{}, reg)
			writeAll(t, s, flows(1, n))
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v (a spill is a loss, not a failure)", err)
			}
			log := lb.String()
			if !strings.Contains(log, c.want) || !strings.Contains(log, s.SpillPath()) {
				t.Fatalf("the log does not say %q and name the spill file:\n%s", c.want, log)
			}
			if d := s.m.delivered.Load(); d != 0 {
				t.Fatalf("%d events delivered", d)
			}
			ids, reasons := spilled(t, s.SpillPath())
			if len(ids) != n || reasons["undelivered"] != n {
				t.Fatalf("spill file holds %d events (%v), want %d undelivered", len(ids), reasons, n)
			}
			if l := reg.Losses(); len(l) == 0 {
				t.Fatal("spilled events not reported as a loss")
			}
		})
	}
}

// E: the SASL password from --kafka-password-file and from
// $PKTPIPE_KAFKA_PASSWORD authenticates as the URL's does (SCRAM-SHA-512
// over SASL_SSL), and the URL then holds no secret.
func TestSASLPasswordFileAndEnv(t *testing.T) {
	env := tlsEnv(t)
	pwFile := filepath.Join(t.TempDir(), "kafka-password")
	if err := os.WriteFile(pwFile, []byte(env["KAFKA_SASL_PASSWORD"]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	raw := fmt.Sprintf("kafka://%s@%s/TOPIC?tls_ca=%s&sasl=scram-sha-512", url.QueryEscape(env["KAFKA_SASL_USER"]), env["KAFKA_SASL_SSL"], url.QueryEscape(env["KAFKA_CA"]))
	const n = 200
	for _, c := range []struct {
		name  string
		opts  Options
		envPW string
	}{
		{"file", Options{PasswordFile: pwFile}, "wrong"}, // the file wins
		{"env", Options{}, env["KAFKA_SASL_PASSWORD"]},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(PasswordEnv, c.envPW)
			topic := uniqueTopic("pw-" + c.name)
			reg := stats.NewRegistry()
			s, _ := tlsSinkOpts(t, strings.Replace(raw, "TOPIC", topic, 1), &c.opts, reg)
			writeAll(t, s, flows(1, n))
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if got := s.m.delivered.Load(); got != n || len(reg.Losses()) != 0 {
				t.Fatalf("delivered %d of %d; losses %+v", got, n, reg.Losses())
			}
			if msgs := consumeTLS(t, env, "SASL_SSL", topic, n); len(msgs) != n {
				t.Fatalf("kcat read %d, want %d", len(msgs), n)
			}
		})
	}
}
