package event

import "net/netip"

// TypeScan is the event_type of a scan report.
const TypeScan Type = "scan"

// Scan kinds (scan.kind).
const (
	ScanPortscan  = "portscan"   // one source, few targets, many ports
	ScanPortsweep = "portsweep"  // one source, many targets, few ports
	ScanPingSweep = "ping_sweep" // echo requests to many targets
	ScanMixed     = "mixed"      // more than one of the above
)

// ScanOpen is one port a scan found open.
type ScanOpen struct {
	DestIP   netip.Addr
	DestPort uint16 // 0 for an echo
	Proto    uint8
}

// Scan reports one source's scan (stages/probe's detector), written when
// the source goes quiet, is evicted from the detector's table, or at
// shutdown. The header holds the timestamp (the scan's end) only: the
// event's src_ip is written by EncodeBody, since Encode writes dest_ip and
// proto with any src_ip.
type Scan struct {
	Header
	Src   netip.Addr
	Kind  string
	Proto string // "TCP", "UDP", "ICMP", "IPv6-ICMP", or "mixed"
	// Start and End are the first and the latest probe (ns).
	Start, End int64
	Probes     uint64 // attempts (flows), retries from a new port included
	Targets    uint64 // distinct destination addresses
	Ports      uint64 // distinct (proto, port) pairs; echo counts none
	// Outcomes per distinct probed (target, proto, port), the strongest
	// answer when a port was probed more than once, indexed as
	// ScanOutcomeNames.
	Outcomes [6]uint64
	Open     []ScanOpen // capped
	OpenMore uint64     // open ports beyond the cap
	// Capped says the source probed more distinct (target, port) pairs
	// than the detector keeps: Targets, Ports and Outcomes then count the
	// kept ones plus, for Outcomes, the rest by flow.
	Capped  bool
	RatePPS float64
	// Reason: "idle", "evicted" or "shutdown".
	Reason string
}

// ScanOutcomeNames are the keys of scan.outcomes, in Scan.Outcomes order.
var ScanOutcomeNames = [6]string{"filtered", "open", "closed", "admin_prohibited", "unreachable", "ttl_exceeded"}

func (*Scan) Type() Type { return TypeScan }

func (s *Scan) EncodeBody(w Writer) {
	w.Key("src_ip")
	w.IP(s.Src)
	w.Key("scan")
	w.BeginObject()
	w.Key("kind")
	w.String(s.Kind)
	w.Key("proto")
	w.String(s.Proto)
	w.Key("start")
	w.Time(s.Start)
	w.Key("end")
	w.Time(s.End)
	w.Key("probes")
	w.Uint(s.Probes)
	w.Key("targets")
	w.Uint(s.Targets)
	w.Key("ports")
	w.Uint(s.Ports)
	w.Key("outcomes")
	w.BeginObject()
	for i, n := range ScanOutcomeNames {
		w.Key(n)
		w.Uint(s.Outcomes[i])
	}
	w.EndObject()
	w.Key("open")
	w.BeginArray()
	for _, o := range s.Open {
		w.BeginObject()
		w.Key("dest_ip")
		w.IP(o.DestIP)
		if o.Proto == 6 || o.Proto == 17 || o.Proto == 132 {
			w.Key("dest_port")
			w.Uint(uint64(o.DestPort))
		}
		w.Key("proto")
		w.String(ProtoName(o.Proto))
		w.EndObject()
	}
	w.EndArray()
	w.Key("open_more")
	w.Uint(s.OpenMore)
	if s.Capped {
		w.Key("capped")
		w.Bool(true)
	}
	w.Key("rate_pps")
	w.Float(s.RatePPS)
	w.Key("reason")
	w.String(s.Reason)
	w.EndObject()
}
