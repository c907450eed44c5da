package kafka

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestParseURL(t *testing.T) {
	c, err := ParseURL("kafka://alice:s%3Dcret@k1:9092,k2/pktpipe.%7Bevent_type%7D?compression=lz4&format=msgpack" +
		"&batch_timeout=5ms&max_inflight=10&max_inflight_bytes=1048576&drain_timeout=2s&spill=/tmp/x.jsonl" +
		"&sasl=scram-sha-512&tls=true&tls_ca=/ca.pem&client_id=probe&auto_create=false")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Brokers, ","); got != "k1:9092,k2:9092" {
		t.Errorf("brokers %q", got)
	}
	if c.Topic != TopicTemplate || c.Compression != "lz4" || c.Format != "msgpack" || c.ClientID != "probe" {
		t.Errorf("topic/compression/format/client: %+v", c)
	}
	if c.BatchTimeout != 5*time.Millisecond || c.MaxInflight != 10 || c.MaxInflightBytes != 1<<20 || c.DrainTimeout != 2*time.Second {
		t.Errorf("numbers: %+v", c)
	}
	if c.SpillPath != "/tmp/x.jsonl" || !c.NoAutoCreateTopics {
		t.Errorf("spill/auto_create: %+v", c)
	}
	if c.SASL == nil || c.SASL.Mechanism != "scram-sha-512" || c.SASL.Username != "alice" || c.SASL.Password != "s=cret" {
		t.Errorf("sasl: %+v", c.SASL)
	}
	if c.TLS == nil || c.TLS.CAFile != "/ca.pem" {
		t.Errorf("tls: %+v", c.TLS)
	}

	c, err = ParseURL("kafka://127.0.0.1:9092/flows")
	if err != nil || c.Topic != "flows" || c.SASL != nil || c.TLS != nil {
		t.Errorf("plain URL: %+v %v", c, err)
	}
	for _, bad := range []string{
		"http://x/y",
		"kafka:///topic",
		"kafka://h/t?compression=brotli",
		"kafka://h/t?batch_size=-1",
		"kafka://h/t?drain_timeout=soon",
		"kafka://h/t?nosuch=1",
		"kafka://u:p@h/t",
	} {
		if _, err := ParseURL(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

// The exchange in RFC 7677 section 3 (SCRAM-SHA-256, user "user",
// password "pencil").
func TestSCRAMRFC7677(t *testing.T) {
	m := newSCRAM(scramSHA256, "user", "pencil").(*scramMechanism)
	s, first := m.start("rOprNGfwEbeRWgbNEkqO")
	if string(first) != "n,,n=user,r=rOprNGfwEbeRWgbNEkqO" {
		t.Fatalf("client-first %q", first)
	}
	done, final, err := s.Next(context.Background(), []byte("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"))
	if err != nil || done {
		t.Fatal(done, err)
	}
	const want = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
	if string(final) != want {
		t.Fatalf("client-final\n got %s\nwant %s", final, want)
	}
	if done, _, err := s.Next(context.Background(), []byte("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")); !done || err != nil {
		t.Fatalf("server-final: %v %v", done, err)
	}
	// A forged server signature must fail.
	s, _ = m.start("rOprNGfwEbeRWgbNEkqO")
	s.Next(context.Background(), []byte("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"))
	if _, _, err := s.Next(context.Background(), []byte("v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")); err == nil {
		t.Fatal("forged server signature accepted")
	}
}
