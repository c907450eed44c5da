package event

import "net/netip"

// Flow is the record of one bidirectional flow, written when it ends.
// Src is the client (the side that sent the first packet, or the SYN).
type Flow struct {
	Header
	PktsToServer, PktsToClient   uint64
	BytesToServer, BytesToClient uint64
	Start, End                   int64  // first and last packet, ns
	State                        string // EVE flow.state: "new", "established", "closed"
	// "fin", "rst", "timeout", "shutdown", "evicted"; "active_timeout"
	// for a record of a flow that carries on (its counters cover the
	// interval from Start to End: see stages/flow, "Active timeout").
	Reason string
	// TCP flags seen: all, to server, to client (only for TCP flows).
	TCPFlags, TCPFlagsTS, TCPFlagsTC uint8
	// Fragments counts IP fragments seen on the flow (non-first fragments
	// cannot be tied to a flow by ports and are counted by the decoder).
	Fragments uint64
	// ICMP flows: the first type/code each way, as EVE's icmp_type/icmp_code
	// (client to server) and response_icmp_type/response_icmp_code.
	ICMP, RespICMP             bool
	ICMPType, ICMPCode         uint8
	RespICMPType, RespICMPCode uint8

	// Ether is the Ethernet header of the flow's first packet each way
	// ([0] client to server, [1] server to client), when the link is
	// Ethernet: EVE's ether.src_macs/dest_macs.
	Ether [2]Ether

	// Tunnel and its outer endpoints, when the flow was found encapsulated.
	Tunnel             string
	OuterSrc, OuterDst netip.Addr

	// Extra lets later stages add their summary to the flow record (RTT,
	// TCP connection state, ICMP feedback...) without this type knowing
	// them. Each is written as its own key at the top level.
	Extra []Extension
	// extraRoom is where Extra starts (RoomForExtra): a record's usual
	// extensions then cost no allocation of their own.
	extraRoom [8]Extension
}

// RoomForExtra points Extra at room inside the record, for whoever makes
// a record before the stages append to it. A record so prepared must not
// be copied by value while its Extra is appended to.
func (f *Flow) RoomForExtra() { f.Extra = f.extraRoom[:0] }

// Ether is one packet's Ethernet addresses.
type Ether struct {
	Src, Dst [6]byte
	Valid    bool
}

// Extension is a named sub-object appended to a flow record by a stage.
type Extension interface {
	// Key is the top-level key, e.g. "rtt".
	Key() string
	// Encode writes the value (an object, array or scalar).
	Encode(w Writer)
}

func (*Flow) Type() Type { return TypeFlow }

func (f *Flow) EncodeBody(w Writer) {
	if f.ICMP {
		w.Key("icmp_type")
		w.Uint(uint64(f.ICMPType))
		w.Key("icmp_code")
		w.Uint(uint64(f.ICMPCode))
	}
	if f.RespICMP {
		w.Key("response_icmp_type")
		w.Uint(uint64(f.RespICMPType))
		w.Key("response_icmp_code")
		w.Uint(uint64(f.RespICMPCode))
	}
	w.Key("flow")
	w.BeginObject()
	w.Key("pkts_toserver")
	w.Uint(f.PktsToServer)
	w.Key("pkts_toclient")
	w.Uint(f.PktsToClient)
	w.Key("bytes_toserver")
	w.Uint(f.BytesToServer)
	w.Key("bytes_toclient")
	w.Uint(f.BytesToClient)
	w.Key("start")
	w.Time(f.Start)
	w.Key("end")
	w.Time(f.End)
	w.Key("age")
	w.Int((f.End - f.Start) / 1e9)
	w.Key("state")
	w.String(f.State)
	w.Key("reason")
	w.String(f.Reason)
	if f.Fragments != 0 {
		w.Key("fragments")
		w.Uint(f.Fragments)
	}
	w.EndObject()
	if f.Proto == 6 {
		w.Key("tcp")
		w.BeginObject()
		w.Key("tcp_flags")
		w.String(hexByte(f.TCPFlags))
		w.Key("tcp_flags_ts")
		w.String(hexByte(f.TCPFlagsTS))
		w.Key("tcp_flags_tc")
		w.String(hexByte(f.TCPFlagsTC))
		for _, fl := range tcpFlagNames {
			if f.TCPFlags&fl.bit != 0 {
				w.Key(fl.name)
				w.Bool(true)
			}
		}
		w.EndObject()
	}
	encodeEther(w, &f.Ether)
	if f.Tunnel != "" {
		w.Key("tunnel")
		w.BeginObject()
		w.Key("type")
		w.String(f.Tunnel)
		w.Key("src_ip")
		w.IP(f.OuterSrc)
		w.Key("dest_ip")
		w.IP(f.OuterDst)
		w.EndObject()
	}
	for _, x := range f.Extra {
		w.Key(x.Key())
		x.Encode(w)
	}
}

// encodeEther writes a flow's ether object as Suricata's flow records do:
// the client side's MACs (the source of its packets, the destination of
// the server's) in src_macs, the server side's in dest_macs, each once.
func encodeEther(w Writer, e *[2]Ether) {
	c, s := &e[0], &e[1]
	if !c.Valid && !s.Valid {
		return
	}
	w.Key("ether")
	w.BeginObject()
	macs := func(k string, a, b [6]byte, va, vb bool) {
		w.Key(k)
		w.BeginArray()
		if va {
			writeMAC(w, a)
		}
		if vb && (!va || b != a) {
			writeMAC(w, b)
		}
		w.EndArray()
	}
	macs("src_macs", c.Src, s.Dst, c.Valid, s.Valid)
	macs("dest_macs", c.Dst, s.Src, c.Valid, s.Valid)
	w.EndObject()
}

var tcpFlagNames = [...]struct {
	bit  uint8
	name string
}{
	{0x01, "fin"}, {0x02, "syn"}, {0x04, "rst"}, {0x08, "psh"},
	{0x10, "ack"}, {0x20, "urg"}, {0x40, "ecn"}, {0x80, "cwr"},
}

// hexByte formats b as two lowercase hex digits, as EVE's tcp_flags.
func hexByte(b uint8) string { return hexTable[b] }

var hexTable = func() (t [256]string) {
	const digits = "0123456789abcdef"
	for i := range t {
		t[i] = string([]byte{digits[i>>4], digits[i&15]})
	}
	return
}()
