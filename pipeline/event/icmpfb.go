package event

import "net/netip"

// ICMPFeedback is one ICMP/ICMPv6 error, classified, with the flow it
// quotes (stages/icmpfb). When the quoted flow was found, the header is the
// flow's (flow_id, community_id, src = client); otherwise src/dest are the
// quoted packet's sender and receiver and proto is the quoted protocol.
type ICMPFeedback struct {
	Header
	ICMPType, ICMPCode uint8
	Feedback           Feedback
}

// Verdict says whether an error's quote fits what the flow has sent.
type Verdict uint8

const (
	VerdictUnknown Verdict = iota // nothing to check (no TCP seq, no state)
	VerdictTrue                   // the quoted TCP seq lies in the sent range
	VerdictFalse                  // it does not: likely forged off-path
)

// Feedback is the icmp_feedback object: the error in plain words.
type Feedback struct {
	Class    string     // port-unreachable, admin-prohibited, ttl-exceeded, ...
	Detail   string     // finer reason (admin-prohibited: net-/host-/communication-prohibited; redirect: net/host...)
	Reporter netip.Addr // the ICMP packet's source (a traceroute hop for ttl-exceeded)

	HasQuote  bool
	Quoted    Quoted
	Truncated bool // the quote ended before its transport ports/seq

	Matched   bool   // the quoted flow was live
	Direction string // toserver/toclient: which way the quoted packet went ("" unmatched)
	Verified  Verdict

	MTU        uint32 // frag-needed / packet-too-big next-hop MTU (HasMTU)
	HasMTU     bool
	Pointer    uint32 // parameter-problem pointer (HasPointer)
	HasPointer bool
	Gateway    netip.Addr // redirect: the better first hop

	SinceLastNs  int64 // error time minus the quoted flow's previous packet (HasSinceLast)
	HasSinceLast bool
}

// Quoted is the packet an ICMP error quotes, as its sender sent it.
type Quoted struct {
	SrcIP, DestIP     netip.Addr
	SrcPort, DestPort uint16
	HasPorts          bool
	Proto             uint8
	TTL               uint8
	IPLen             uint16
	Seq               uint32
	HasSeq            bool
	ICMPType          uint8 // a quoted ICMP message (echo): its type and id
	ICMPID            uint16
	HasEcho           bool
}

func (*ICMPFeedback) Type() Type { return TypeICMPFeedback }

func (e *ICMPFeedback) EncodeBody(w Writer) {
	w.Key("icmp_type")
	w.Uint(uint64(e.ICMPType))
	w.Key("icmp_code")
	w.Uint(uint64(e.ICMPCode))
	w.Key("icmp_feedback")
	e.Feedback.encode(w, nil)
}

// encode writes the feedback object. For a flow record's items[] entry
// (it != nil) it starts with the error's timestamp and type/code, gives
// only the quoted TTL of the quote (the flow names the tuple) and leaves
// out matched (always true there).
func (fb *Feedback) encode(w Writer, it *FeedbackItem) {
	item := it != nil
	w.BeginObject()
	if item {
		w.Key("timestamp")
		w.Time(it.Timestamp)
		w.Key("icmp_type")
		w.Uint(uint64(it.ICMPType))
		w.Key("icmp_code")
		w.Uint(uint64(it.ICMPCode))
	}
	w.Key("class")
	w.String(fb.Class)
	if fb.Detail != "" {
		w.Key("detail")
		w.String(fb.Detail)
	}
	if fb.Reporter.IsValid() {
		w.Key("reporter")
		w.IP(fb.Reporter)
	}
	if fb.HasQuote && !item {
		q := &fb.Quoted
		w.Key("quoted")
		w.BeginObject()
		w.Key("src_ip")
		w.IP(q.SrcIP)
		if q.HasPorts {
			w.Key("src_port")
			w.Uint(uint64(q.SrcPort))
		}
		w.Key("dest_ip")
		w.IP(q.DestIP)
		if q.HasPorts {
			w.Key("dest_port")
			w.Uint(uint64(q.DestPort))
		}
		w.Key("proto")
		w.String(ProtoName(q.Proto))
		w.Key("ttl")
		w.Uint(uint64(q.TTL))
		w.Key("ip_len")
		w.Uint(uint64(q.IPLen))
		if q.HasSeq {
			w.Key("seq")
			w.Uint(uint64(q.Seq))
		}
		if q.HasEcho {
			w.Key("icmp_type")
			w.Uint(uint64(q.ICMPType))
			w.Key("icmp_id")
			w.Uint(uint64(q.ICMPID))
		}
		w.EndObject()
	}
	if item && fb.HasQuote {
		w.Key("quoted_ttl")
		w.Uint(uint64(fb.Quoted.TTL))
	}
	if fb.Truncated {
		w.Key("truncated")
		w.Bool(true)
	}
	if !item {
		w.Key("matched")
		w.Bool(fb.Matched)
	}
	if fb.Direction != "" {
		w.Key("direction")
		w.String(fb.Direction)
	}
	switch fb.Verified {
	case VerdictTrue:
		w.Key("verified")
		w.Bool(true)
	case VerdictFalse:
		w.Key("verified")
		w.Bool(false)
	}
	if fb.HasMTU {
		w.Key("mtu")
		w.Uint(uint64(fb.MTU))
	}
	if fb.HasPointer {
		w.Key("pointer")
		w.Uint(uint64(fb.Pointer))
	}
	if fb.Gateway.IsValid() {
		w.Key("gateway")
		w.IP(fb.Gateway)
	}
	if fb.HasSinceLast {
		w.Key("since_last_ms")
		w.Float(float64(fb.SinceLastNs) / 1e6)
	}
	w.EndObject()
}

// FeedbackItem is one entry of a flow record's icmp_feedback.items.
type FeedbackItem struct {
	Timestamp          int64
	ICMPType, ICMPCode uint8
	Feedback           Feedback
}

// FlowFeedback is the icmp_feedback extension of a flow record: how many
// errors quoted the flow, the first few, and what they add up to.
type FlowFeedback struct {
	Count      uint64 // errors that quoted the flow
	Unverified uint64 // of which the quoted TCP seq was out of the sent range
	Summary    string // rejected, filtered, unreachable, ttl-exceeded ("" none)
	PathMTU    uint32 // smallest frag-needed / packet-too-big MTU (0 none)
	Items      []FeedbackItem
}

func (*FlowFeedback) Key() string { return "icmp_feedback" }

func (x *FlowFeedback) Encode(w Writer) {
	w.BeginObject()
	w.Key("count")
	w.Uint(x.Count)
	if x.Unverified != 0 {
		w.Key("unverified")
		w.Uint(x.Unverified)
	}
	if x.Summary != "" {
		w.Key("summary")
		w.String(x.Summary)
	}
	if x.PathMTU != 0 {
		w.Key("path_mtu")
		w.Uint(uint64(x.PathMTU))
	}
	w.Key("items")
	w.BeginArray()
	for i := range x.Items {
		it := &x.Items[i]
		it.Feedback.encode(w, it)
	}
	w.EndArray()
	w.EndObject()
}
