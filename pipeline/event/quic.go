package event

// QUIC is the record of one TLS hello carried in QUIC Initial packets
// (stages/quic), written when the hello has been decrypted and
// reassembled, with the packet that completed it as the timestamp. As in
// Suricata, the client's hello and the server's are two records: the
// client's has sni, ja3, ja4 and its extensions, the server's ja3s, its
// extensions and (beyond EVE) tls_version and cipher. Src is the client in
// both. Field names follow Suricata EVE's quic object; the fields EVE lacks
// are documented where they are written.
type QUIC struct {
	Header
	// AppProto is the flow's app_proto when the event was written, as
	// stages/appproto had named it ("" when it had not, or does not run).
	AppProto string

	// Version is the QUIC version of the client's Initial as Suricata
	// writes it: lowercase hex without leading zeros ("1", "6b3343cf",
	// "ff00001d").
	Version      string
	SNI          string
	JA3, JA3Hash string
	JA4          string
	JA4R         string // ja4_r: raw, sorted (beyond EVE)
	ClientALPNs  []string
	Extensions   []QUICExtension // the hello's extensions, wire order, GREASE included (as EVE)

	// Server hello.
	JA3S, JA3SHash string
	TLSVersion     string // negotiated, as tls.version writes it (beyond EVE)
	Cipher         string // chosen cipher suite's IANA name (beyond EVE)

	// Beyond EVE.
	Retry    bool // the server sent a Retry before this hello (quic.retry)
	Initials int  // client Initial packets decrypted up to the hello's completion (quic.initials)
}

// QUICExtension is one entry of EVE's quic.extensions: the type, its name
// when known, and the values EVE gives for server_name and alpn.
type QUICExtension struct {
	Type   uint16
	Name   string
	Values []string
}

func (*QUIC) Type() Type { return TypeQUIC }

func (q *QUIC) EncodeBody(w Writer) {
	optString(w, "app_proto", q.AppProto)
	w.Key("quic")
	w.BeginObject()
	optString(w, "version", q.Version)
	optString(w, "sni", q.SNI)
	hashObject(w, "ja3", q.JA3Hash, q.JA3)
	hashObject(w, "ja3s", q.JA3SHash, q.JA3S)
	optString(w, "ja4", q.JA4)
	optString(w, "ja4_r", q.JA4R)
	optString(w, "tls_version", q.TLSVersion)
	optString(w, "cipher", q.Cipher)
	optStrings(w, "client_alpns", q.ClientALPNs)
	if len(q.Extensions) > 0 {
		w.Key("extensions")
		w.BeginArray()
		for i := range q.Extensions {
			e := &q.Extensions[i]
			w.BeginObject()
			optString(w, "name", e.Name)
			w.Key("type")
			w.Uint(uint64(e.Type))
			if len(e.Values) > 0 {
				w.Key("values")
				w.BeginArray()
				for _, v := range e.Values {
					w.String(v)
				}
				w.EndArray()
			}
			w.EndObject()
		}
		w.EndArray()
	}
	if q.Retry {
		w.Key("retry")
		w.Bool(true)
	}
	if q.Initials > 0 {
		w.Key("initials")
		w.Uint(uint64(q.Initials))
	}
	w.EndObject()
}

// QUICSummary is stages/quic's summary on the flow record (key "quic").
type QUICSummary struct {
	Version     string // of the keys in use ("1", "6b3343cf", ...)
	SNI         string
	JA4         string
	ClientALPNs []string
	// From the server's Initial (ServerHello): the negotiated TLS version
	// as tls.version writes it, and the cipher suite's IANA name.
	TLSVersion string
	Cipher     string
	Retry      bool
	// VersionsOffered lists the versions of a Version Negotiation packet
	// from the server, as Version writes them.
	VersionsOffered []string
	// Initial packets decrypted each way, and Initial packets that did not
	// decrypt.
	ClientInitials, ServerInitials, Undecryptable uint64
	// State: "complete" (both hellos read), "client_hello" (only the
	// client's), "server_hello" (only the server's), "incomplete" (the
	// hello never completed), "gave_up" (the reassembly cap, too many
	// fragments, or too many packets without progress), "not_decrypted"
	// (no Initial could be decrypted).
	State string
}

func (*QUICSummary) Key() string { return "quic" }

func (s *QUICSummary) Encode(w Writer) {
	w.BeginObject()
	optString(w, "version", s.Version)
	optString(w, "sni", s.SNI)
	optString(w, "ja4", s.JA4)
	optStrings(w, "client_alpns", s.ClientALPNs)
	optString(w, "tls_version", s.TLSVersion)
	optString(w, "cipher", s.Cipher)
	if s.Retry {
		w.Key("retry")
		w.Bool(true)
	}
	if len(s.VersionsOffered) > 0 {
		w.Key("versions_offered")
		w.BeginArray()
		for _, v := range s.VersionsOffered {
			w.String(v)
		}
		w.EndArray()
	}
	w.Key("client_initials")
	w.Uint(s.ClientInitials)
	w.Key("server_initials")
	w.Uint(s.ServerInitials)
	if s.Undecryptable > 0 {
		w.Key("undecryptable")
		w.Uint(s.Undecryptable)
	}
	optString(w, "state", s.State)
	w.EndObject()
}
