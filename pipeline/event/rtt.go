package event

// RTT kinds (rtt.kind).
const (
	RTTTCPHandshake = "tcp_handshake"
	RTTICMPEcho     = "icmp_echo"
	RTTDNS          = "dns"
	RTTTLSHello     = "tls_hello"
)

// RTT is one request/response correlation (stages/rtt): a TCP handshake,
// an ICMP/ICMPv6 echo, a DNS query. The header is the flow's (src = the
// client); the timestamp is the packet that completed the correlation
// (the handshake's ACK, the echo reply, the DNS response, the RST of a
// refused connection). Every duration is given in milliseconds (float,
// *_ms) and exactly in nanoseconds of packet time (integer, *_ns).
type RTT struct {
	Header
	Kind string

	// tcp_handshake: SYN→SYN/ACK (the tap-to-server half), SYN/ACK→ACK
	// (tap-to-client) and their sum, SYN→ACK.
	ServerNS, ClientNS, HandshakeNS int64
	SYNRetransmitted                bool // the client sent its SYN more than once
	SYNACKRetransmitted             bool // the server sent its SYN/ACK more than once
	// Refused: the server answered the SYN with an RST (RSTNS is SYN→RST);
	// no RTT fields are written then.
	Refused bool
	RSTNS   int64

	// icmp_echo: echo id and sequence; dns: the query id, name and type.
	ID, Seq uint16
	RRName  string
	RRType  string
	RCode   string
	// icmp_echo, dns: request→response.
	NS int64
	// Retransmitted: the request was sent more than once with the same
	// key; the time is measured from the latest copy (as Wireshark does).
	Retransmitted bool
}

func (*RTT) Type() Type { return TypeRTT }

func (r *RTT) EncodeBody(w Writer) {
	w.Key("rtt")
	w.BeginObject()
	w.Key("kind")
	w.String(r.Kind)
	switch r.Kind {
	case RTTTCPHandshake:
		if r.Refused {
			w.Key("refused")
			w.Bool(true)
			durMS(w, "rst_ms", "rst_ns", r.RSTNS)
			break
		}
		durMS(w, "handshake_ms", "handshake_ns", r.HandshakeNS)
		durMS(w, "server_ms", "server_ns", r.ServerNS)
		durMS(w, "client_ms", "client_ns", r.ClientNS)
	default:
		if r.Kind == RTTICMPEcho {
			w.Key("id")
			w.Uint(uint64(r.ID))
			w.Key("seq")
			w.Uint(uint64(r.Seq))
		} else {
			w.Key("id")
			w.Uint(uint64(r.ID))
			if r.RRName != "" {
				w.Key("rrname")
				w.String(r.RRName)
				w.Key("rrtype")
				w.String(r.RRType)
			}
			if r.RCode != "" {
				w.Key("rcode")
				w.String(r.RCode)
			}
		}
		durMS(w, "rtt_ms", "rtt_ns", r.NS)
	}
	if r.SYNRetransmitted {
		w.Key("syn_retransmitted")
		w.Bool(true)
	}
	if r.SYNACKRetransmitted {
		w.Key("synack_retransmitted")
		w.Bool(true)
	}
	if r.Retransmitted {
		w.Key("retransmitted")
		w.Bool(true)
	}
	w.EndObject()
}

// durMS writes a duration as float milliseconds and integer nanoseconds.
// The keys are passed whole (constants) so encoding allocates nothing.
func durMS(w Writer, msKey, nsKey string, ns int64) {
	w.Key(msKey)
	w.Float(float64(ns) / 1e6)
	w.Key(nsKey)
	w.Int(ns)
}

// RTTSummary is the rtt object added to a flow record (stages/rtt): the
// handshake's times and, per kind, count/min/avg/max of the answered
// requests and the number left unanswered.
type RTTSummary struct {
	Handshake        bool
	ServerNS         int64
	ClientNS         int64
	HandshakeNS      int64
	Refused          bool
	RSTNS            int64
	Echo, DNS        RTTStats
	SYNRetransmitted bool
}

// RTTStats summarises the answered requests of one kind on a flow.
type RTTStats struct {
	Count, Unanswered uint64
	MinNS, MaxNS      int64
	SumNS             int64
}

// Add records one measured time.
func (s *RTTStats) Add(ns int64) {
	if s.Count == 0 || ns < s.MinNS {
		s.MinNS = ns
	}
	if s.Count == 0 || ns > s.MaxNS {
		s.MaxNS = ns
	}
	s.Count++
	s.SumNS += ns
}

func (*RTTSummary) Key() string { return "rtt" }

func (s *RTTSummary) Encode(w Writer) {
	w.BeginObject()
	if s.Handshake {
		durMS(w, "handshake_ms", "handshake_ns", s.HandshakeNS)
		durMS(w, "server_ms", "server_ns", s.ServerNS)
		durMS(w, "client_ms", "client_ns", s.ClientNS)
	}
	if s.Refused {
		w.Key("refused")
		w.Bool(true)
		durMS(w, "rst_ms", "rst_ns", s.RSTNS)
	}
	if s.SYNRetransmitted {
		w.Key("syn_retransmitted")
		w.Bool(true)
	}
	s.Echo.encode(w, "echo")
	s.DNS.encode(w, "dns")
	w.EndObject()
}

func (s *RTTStats) encode(w Writer, key string) {
	if s.Count == 0 && s.Unanswered == 0 {
		return
	}
	w.Key(key)
	w.BeginObject()
	w.Key("count")
	w.Uint(s.Count)
	if s.Count > 0 {
		avg := s.SumNS / int64(s.Count)
		durMS(w, "min_ms", "min_ns", s.MinNS)
		durMS(w, "avg_ms", "avg_ns", avg)
		durMS(w, "max_ms", "max_ns", s.MaxNS)
	}
	w.Key("unanswered")
	w.Uint(s.Unanswered)
	w.EndObject()
}

// Empty reports whether the summary has nothing to write.
func (s *RTTSummary) Empty() bool {
	return !s.Handshake && !s.Refused && !s.SYNRetransmitted &&
		s.Echo.Count == 0 && s.Echo.Unanswered == 0 && s.DNS.Count == 0 && s.DNS.Unanswered == 0
}
