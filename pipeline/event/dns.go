package event

// DNS is one DNS message (stages/dns), as Suricata EVE's dns object: a
// query (type "query") or a response (type "answer"). Src is the flow's
// client, as for every flow-bound event; the timestamp is the message's
// packet.
type DNS struct {
	Header
	Answer bool // type "answer" (QR set), else "query"
	ID     uint16
	Flags  uint16
	Opcode uint8
	RRName string // first question's name; "" if none
	RRType string
	RCode  string // answers only
	// RTT of an answer: the time since the latest query with its id on the
	// flow (HasRTT false when no query was outstanding).
	RTTNS  int64
	HasRTT bool
}

func (*DNS) Type() Type { return TypeDNS }

func (d *DNS) EncodeBody(w Writer) {
	w.Key("dns")
	w.BeginObject()
	w.Key("type")
	if d.Answer {
		w.String("answer")
	} else {
		w.String("query")
	}
	w.Key("id")
	w.Uint(uint64(d.ID))
	w.Key("flags")
	w.String(hexByte(uint8(d.Flags>>8)) + hexByte(uint8(d.Flags)))
	for _, fl := range dnsFlagNames {
		if d.Flags&fl.bit != 0 {
			w.Key(fl.name)
			w.Bool(true)
		}
	}
	w.Key("opcode")
	w.Uint(uint64(d.Opcode))
	if d.RRName != "" {
		w.Key("rrname")
		w.String(d.RRName)
		w.Key("rrtype")
		w.String(d.RRType)
	}
	if d.Answer {
		w.Key("rcode")
		w.String(d.RCode)
	}
	if d.HasRTT {
		durMS(w, "rtt_ms", "rtt_ns", d.RTTNS)
	}
	w.EndObject()
}

var dnsFlagNames = [...]struct {
	bit  uint16
	name string
}{
	{0x8000, "qr"}, {0x0400, "aa"}, {0x0200, "tc"}, {0x0100, "rd"}, {0x0080, "ra"},
	{0x0020, "ad"}, {0x0010, "cd"},
}
