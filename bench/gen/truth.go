package gen

import (
	"encoding/json"
	"io"
	"net/netip"
)

// Truth is the generator's ground truth for one capture: every flow whose
// first packet was written, in the order flows started. Fields that depend
// on later packets (HandshakeComplete, HelloComplete, Answered, Replies,
// Sent...) say whether those packets made it into the capture before the
// packet limit.
type Truth struct {
	Seed    int64   `json:"seed"`
	Packets int     `json:"packets"`
	Conns   []*Conn `json:"conns"`
}

// Conn is one flow's ground truth. Client is the side that opened it.
type Conn struct {
	ID         int        `json:"id"`
	Kind       string     `json:"kind"` // tls, tcp, dns, icmp-echo, tcp-refused, tcp-unanswered, udp-closed-port, ttl-exceeded, frag-needed
	Proto      string     `json:"proto"`
	Client     netip.Addr `json:"client"`
	ClientPort uint16     `json:"client_port,omitempty"`
	Server     netip.Addr `json:"server"`
	ServerPort uint16     `json:"server_port,omitempty"`
	VLAN       []uint16   `json:"vlan,omitempty"`
	Start      int64      `json:"start_ns"` // first packet

	// TCP: the tap-to-client and tap-to-server round trips. The
	// handshake RTT (SYN to ACK) is their sum.
	ClientRTT         int64  `json:"client_rtt_ns,omitempty"`
	ServerRTT         int64  `json:"server_rtt_ns,omitempty"`
	HandshakeComplete bool   `json:"handshake_complete,omitempty"`
	BulkBytes         int64  `json:"bulk_bytes,omitempty"`
	BulkUpload        bool   `json:"bulk_upload,omitempty"`
	Close             string `json:"close,omitempty"` // fin or rst, as planned

	TLS  *TLSTruth  `json:"tls,omitempty"`
	DNS  []DNSQuery `json:"dns,omitempty"`
	Echo *EchoTruth `json:"echo,omitempty"`
	ICMP *ICMPTruth `json:"icmp_error,omitempty"`
}

// TLSTruth is what a connection's ClientHello offered and what the server
// chose.
type TLSTruth struct {
	SNI               string   `json:"sni,omitempty"`
	ALPN              []string `json:"alpn,omitempty"`
	SupportedVersions []uint16 `json:"supported_versions,omitempty"` // GREASE removed
	MLKEM             bool     `json:"mlkem,omitempty"`              // X25519MLKEM768 key share offered
	Split             bool     `json:"split"`                        // the hello spans more than one segment
	OddSplit          bool     `json:"odd_split,omitempty"`          // first segment cut after 100 bytes
	Segments          int      `json:"segments"`
	HelloLen          int      `json:"hello_len"` // record bytes
	JA3               string   `json:"ja3"`
	JA3Hash           string   `json:"ja3_hash"`
	Version           uint16   `json:"version"` // chosen by the server
	Cipher            uint16   `json:"cipher"`
	ChosenALPN        string   `json:"chosen_alpn,omitempty"`
	HelloRTT          int64    `json:"hello_rtt_ns"` // last ClientHello segment to first ServerHello segment
	HelloComplete     bool     `json:"hello_complete,omitempty"`
	ServerHelloSeen   bool     `json:"server_hello_seen,omitempty"`
}

// DNSQuery is one DNS query and its planned answer.
type DNSQuery struct {
	ID       uint16       `json:"id"`
	Name     string       `json:"name"`
	Type     uint16       `json:"type"`
	Delay    int64        `json:"delay_ns"`
	RCode    int          `json:"rcode"`
	Answers  []netip.Addr `json:"answers,omitempty"`
	Sent     bool         `json:"sent"`
	Answered bool         `json:"answered"`
}

// EchoTruth is a ping session.
type EchoTruth struct {
	ID       uint16 `json:"id"`
	RTT      int64  `json:"rtt_ns"`
	Requests int    `json:"requests"`
	Replies  int    `json:"replies"`
}

// ICMPTruth is an ICMP error the flow provoked.
type ICMPTruth struct {
	Name  string     `json:"name"`
	From  netip.Addr `json:"from"`
	Type  uint8      `json:"type"`
	Code  uint8      `json:"code"`
	MTU   int        `json:"mtu,omitempty"`
	Hop   int        `json:"hop,omitempty"`
	Delay int64      `json:"delay_ns,omitempty"` // quoted packet to error
	Sent  int        `json:"sent"`               // errors written
}

// WriteJSON writes the truth as indented JSON.
func (t *Truth) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	return enc.Encode(t)
}

// ReadTruth decodes a truth file written by WriteJSON.
func ReadTruth(r io.Reader) (*Truth, error) {
	var t Truth
	if err := json.NewDecoder(r).Decode(&t); err != nil {
		return nil, err
	}
	return &t, nil
}
