package event

// TLS is the record of one TLS handshake seen on a TCP flow (stages/tlsfp).
// Src is the client. Field names follow Suricata EVE's tls object; the
// fields EVE lacks are documented where they are written.
type TLS struct {
	Header
	// AppProto is the flow's app_proto when the event was written, as
	// stages/appproto had named it ("" when it had not, or does not run).
	AppProto string

	Version     string   // negotiated, Suricata style ("TLS 1.2", "TLSv1", "TLS 1.3 draft-23")
	SNI         string   // server_name from the ClientHello
	ClientALPNs []string // offered, in order
	ServerALPNs []string // chosen (TLS ≤ 1.2: in the ServerHello)

	JA3, JA3Hash   string
	JA3S, JA3SHash string
	JA4            string // JA4 (FoxIO, BSD-3)
	JA4R           string // JA4_r: raw, sorted
	JA4O           string // JA4_o: original order, hashed
	JA4RO          string // JA4_ro: raw, original order

	// client_handshake: as offered (GREASE removed from ciphers and
	// extensions; signature algorithms as sent).
	Client *TLSHandshake
	// server_handshake: Ciphers holds the one chosen cipher.
	Server *TLSHandshake

	Cipher string // chosen cipher suite's IANA name (Go's name for it), "0xC0AB" if unknown

	// Leaf certificate (TLS ≤ 1.2, where it travels in clear).
	Subject, IssuerDN   string // "C=US, O=Google Inc, CN=..."
	Serial              string // DER bytes as uppercase colon-separated hex
	Fingerprint         string // SHA-1 of the DER, lowercase colon-separated hex
	NotBefore, NotAfter string // "2016-02-23T09:26:45" (UTC)
	SubjectAltName      []string

	// HelloRTTms is the time from the packet that completed the
	// ClientHello to the one that completed the ServerHello, in
	// milliseconds (tls.hello_rtt_ms; set only when both were seen).
	HelloRTTms  float64
	HasHelloRTT bool
	HelloRetry  bool      // the first ServerHello was a HelloRetryRequest (tls.hello_retry)
	Retry       *TLSRetry // the second ClientHello after a HelloRetryRequest (tls.retry)
	Truncated   bool      // the handshake outgrew the reassembly buffer (tls.truncated)
	Proxy       *TLSProxy // TLS began after a proxy handshake (tls.proxy, pktpipe's own)
}

// TLSProxy is the proxy handshake a TLS stream followed: its kind
// (http_connect, socks4, socks4a, socks5) and the target the client asked
// the proxy for.
type TLSProxy struct {
	Type     string
	DestHost string
	DestPort uint16
}

// TLSHandshake is EVE's client_handshake/server_handshake object.
type TLSHandshake struct {
	Version string
	Ciphers []uint16
	Exts    []uint16
	SigAlgs []uint16
}

// TLSRetry holds the fingerprints of the ClientHello sent after a
// HelloRetryRequest.
type TLSRetry struct {
	JA3, JA3Hash           string
	JA4, JA4R, JA4O, JA4RO string
}

func (*TLS) Type() Type { return TypeTLS }

func (t *TLS) EncodeBody(w Writer) {
	optString(w, "app_proto", t.AppProto)
	w.Key("tls")
	w.BeginObject()
	optString(w, "subject", t.Subject)
	optString(w, "issuerdn", t.IssuerDN)
	optStrings(w, "subjectaltname", t.SubjectAltName)
	optString(w, "serial", t.Serial)
	optString(w, "fingerprint", t.Fingerprint)
	optString(w, "sni", t.SNI)
	optString(w, "version", t.Version)
	optString(w, "notbefore", t.NotBefore)
	optString(w, "notafter", t.NotAfter)
	hashObject(w, "ja3", t.JA3Hash, t.JA3)
	hashObject(w, "ja3s", t.JA3SHash, t.JA3S)
	optString(w, "ja4", t.JA4)
	optString(w, "ja4_r", t.JA4R)
	optString(w, "ja4_o", t.JA4O)
	optString(w, "ja4_ro", t.JA4RO)
	optStrings(w, "client_alpns", t.ClientALPNs)
	optStrings(w, "server_alpns", t.ServerALPNs)
	if t.Client != nil {
		w.Key("client_handshake")
		t.Client.encode(w, false)
	}
	if t.Server != nil {
		w.Key("server_handshake")
		t.Server.encode(w, true)
	}
	optString(w, "cipher", t.Cipher)
	if t.HasHelloRTT {
		w.Key("hello_rtt_ms")
		w.Float(t.HelloRTTms)
	}
	if t.HelloRetry {
		w.Key("hello_retry")
		w.Bool(true)
	}
	if r := t.Retry; r != nil {
		w.Key("retry")
		w.BeginObject()
		hashObject(w, "ja3", r.JA3Hash, r.JA3)
		optString(w, "ja4", r.JA4)
		optString(w, "ja4_r", r.JA4R)
		optString(w, "ja4_o", r.JA4O)
		optString(w, "ja4_ro", r.JA4RO)
		w.EndObject()
	}
	if t.Truncated {
		w.Key("truncated")
		w.Bool(true)
	}
	if p := t.Proxy; p != nil {
		w.Key("proxy")
		w.BeginObject()
		w.Key("type")
		w.String(p.Type)
		optString(w, "dest_host", p.DestHost)
		if p.DestPort != 0 {
			w.Key("dest_port")
			w.Uint(uint64(p.DestPort))
		}
		w.EndObject()
	}
	w.EndObject()
}

func (h *TLSHandshake) encode(w Writer, server bool) {
	u16s := func(k string, vs []uint16) {
		if len(vs) > 0 {
			w.Key(k)
			w.BeginArray()
			for _, v := range vs {
				w.Uint(uint64(v))
			}
			w.EndArray()
		}
	}
	w.BeginObject()
	if h.Version != "" {
		w.Key("version")
		w.String(h.Version)
	}
	if server {
		if len(h.Ciphers) > 0 {
			w.Key("cipher")
			w.Uint(uint64(h.Ciphers[0]))
		}
	} else {
		u16s("ciphers", h.Ciphers)
	}
	u16s("exts", h.Exts)
	u16s("sig_algs", h.SigAlgs)
	w.EndObject()
}
