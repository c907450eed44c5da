// Package gen writes deterministic synthetic captures for pktpipe's
// benchmarks and correctness tests.
//
// A capture depends only on the Config and the Format: the same seed gives
// the same bytes. The generator simulates many concurrent flows over
// simulated time, as seen from a tap between clients (10.1.0.0/16,
// fd00:1::/64) and servers (10.2.0.0/16, fd00:2::/64, resolvers on .53,
// routers in 10.255.0.0/16 and fd00:ff::/64):
//
//   - TCP connections with a full handshake whose tap-side RTTs are chosen
//     per connection (SYN at t, SYN/ACK at t+server RTT, ACK one client RTT
//     later), request/response exchanges, bulk transfers of 100 KB–5 MB in
//     slow-start windows, closed by FIN/FIN or RST; refused SYNs (RST) and
//     unanswered SYNs retransmitted after 1 s and 3 s;
//   - TLS on 443 (and 8443, 993, 995, 465): TLS 1.2 and 1.3 ClientHellos
//     with GREASE, SNI, ALPN and the usual extensions, some with an
//     X25519MLKEM768 key share that spans two segments, some split after
//     100 bytes; ServerHellos; then encrypted records;
//   - HTTP/1.1 on 80 and 8080;
//   - DNS queries (A/AAAA) with known delays, some unanswered or NXDOMAIN;
//   - ICMP and ICMPv6 echo with known RTTs, some unanswered;
//   - ICMP errors quoting earlier packets: port unreachable, TTL exceeded
//     from a router for a SYN, fragmentation needed / packet too big.
//
// A share of flows is IPv6 and a share is VLAN-tagged (some QinQ).
// Checksums are correct. Packets are written as they are generated, so
// memory does not grow with the packet count.
//
// Write returns a Summary counted from what was actually written (a flow
// cut off by the packet limit counts only as far as it got), and with
// Config.Truth the per-flow ground truth for tests.
package gen

import (
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"net/netip"
	"time"
)

// Config controls what is generated. Zero fields take the defaults.
type Config struct {
	Seed    int64
	Packets int // exact number of packets to write (required, > 0)

	// IPv6Share and VLANShare are the fractions of flows that are IPv6 and
	// VLAN-tagged (default 0.2 and 0.1; a negative value means none).
	// QinQShare is the fraction of tagged flows that carry two tags
	// (default 0.2).
	IPv6Share, VLANShare, QinQShare float64

	// Start is the time of the first flow (default 2025-01-01T00:00:00Z).
	Start time.Time

	// FlowsPerSecond is the mean rate at which new flows start, in
	// simulated time (default 1000).
	FlowsPerSecond float64

	// BulkShare is the fraction of TCP/TLS connections that carry a bulk
	// transfer of 100 KB–5 MB (default 0.04; negative means none).
	BulkShare float64

	// Truth records per-flow ground truth in Summary.Truth.
	Truth bool
}

// DefaultStart is the default simulated start time.
var DefaultStart = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func share(v, def float64) float64 {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

func (c *Config) defaults() {
	c.IPv6Share = share(c.IPv6Share, 0.2)
	c.VLANShare = share(c.VLANShare, 0.1)
	c.QinQShare = share(c.QinQShare, 0.2)
	c.BulkShare = share(c.BulkShare, 0.04)
	if c.Start.IsZero() {
		c.Start = DefaultStart
	}
	if c.FlowsPerSecond <= 0 {
		c.FlowsPerSecond = 1000
	}
}

// RTTStats summarises a set of round-trip times in nanoseconds.
type RTTStats struct {
	N   int   `json:"n"`
	Min int64 `json:"min_ns"`
	Max int64 `json:"max_ns"`
	Sum int64 `json:"sum_ns"`
}

func (s *RTTStats) add(v int64) {
	if s.N == 0 || v < s.Min {
		s.Min = v
	}
	if v > s.Max {
		s.Max = v
	}
	s.N++
	s.Sum += v
}

// Summary counts what was written.
type Summary struct {
	Packets int   `json:"packets"`
	Bytes   int64 `json:"bytes"` // captured bytes (frames)
	First   int64 `json:"first_ns"`
	Last    int64 `json:"last_ns"`

	// Flows counts flows by kind (see Conn.Kind) whose first packet was
	// written.
	Flows     map[string]int `json:"flows"`
	IPv6Flows int            `json:"ipv6_flows"`
	VLANFlows int            `json:"vlan_flows"`
	QinQFlows int            `json:"qinq_flows"`

	// Handshakes counts completed three-way handshakes (the final ACK was
	// written); HandshakeRTT is SYN→ACK, ClientRTT and ServerRTT its parts.
	Handshakes   int      `json:"handshakes"`
	HandshakeRTT RTTStats `json:"handshake_rtt"`
	ClientRTT    RTTStats `json:"client_rtt"`
	ServerRTT    RTTStats `json:"server_rtt"`
	RefusedSYNs  int      `json:"refused_syns"`
	SYNRetrans   int      `json:"syn_retransmissions"`

	// TLS ClientHellos written in full, those spanning more than one
	// segment (of which OddSplit were cut after 100 bytes), and
	// ServerHellos.
	TLSClientHellos int `json:"tls_client_hellos"`
	TLSSplitHellos  int `json:"tls_split_hellos"`
	TLSOddSplit     int `json:"tls_odd_split_hellos"`
	TLSServerHellos int `json:"tls_server_hellos"`

	DNSQueries   int `json:"dns_queries"`
	DNSResponses int `json:"dns_responses"`
	EchoRequests int `json:"echo_requests"`
	EchoReplies  int `json:"echo_replies"`

	// ICMPErrors counts ICMP errors by name: port-unreachable,
	// ttl-exceeded, frag-needed, packet-too-big.
	ICMPErrors map[string]int `json:"icmp_errors"`

	Truth *Truth `json:"-"`
}

// Write generates cfg.Packets packets and writes them to w as a capture in
// format f.
func Write(w io.Writer, cfg Config, f Format) (Summary, error) {
	if cfg.Packets <= 0 {
		return Summary{}, errors.New("gen: Config.Packets must be positive")
	}
	cfg.defaults()
	cw, err := newCapWriter(w, f)
	if err != nil {
		return Summary{}, err
	}
	g := newGen(cfg, cw)
	if err := g.run(); err != nil {
		return g.sum, err
	}
	if err := cw.finish(); err != nil {
		return g.sum, err
	}
	if cfg.Truth {
		g.sum.Truth = &Truth{Seed: cfg.Seed, Packets: cfg.Packets, Conns: g.truth}
	}
	return g.sum, nil
}

const nClients = 4000

type gen struct {
	cfg   Config
	cw    *capWriter
	r     *rand.Rand // flow arrivals
	heap  []*flow
	next  int64 // next flow arrival
	ids   int
	ports [nClients]uint16
	sum   Summary
	truth []*Conn
	buf   []byte
}

func newGen(cfg Config, cw *capWriter) *gen {
	g := &gen{
		cfg:  cfg,
		cw:   cw,
		r:    rand.New(rand.NewPCG(uint64(cfg.Seed), 0x61727269)),
		next: cfg.Start.UnixNano(),
		buf:  make([]byte, 16<<10),
	}
	g.sum.Flows = map[string]int{}
	g.sum.ICMPErrors = map[string]int{}
	for i := range g.ports {
		g.ports[i] = uint16(32768 + (i*4099)%28000)
	}
	return g
}

func (g *gen) run() error {
	for g.sum.Packets < g.cfg.Packets {
		if len(g.heap) == 0 || g.next <= g.heap[0].nextT() {
			f := g.newFlow(g.next)
			g.heapPush(f)
			// Exponential inter-arrival times: a Poisson process of flows.
			g.next += int64(-math.Log(1-g.r.Float64()) / g.cfg.FlowsPerSecond * 1e9)
			continue
		}
		f := g.heap[0]
		if f.phaseAt >= 0 && (len(f.pend) == 0 || f.phaseAt < f.pend[0].t) {
			fn := f.phase
			f.phaseAt, f.phase = -1, nil
			fn(f)
		} else {
			p := f.pop()
			if err := g.emit(f, &p); err != nil {
				return err
			}
		}
		if f.done() {
			g.heapPopTop()
		} else {
			g.heapDown(0)
		}
	}
	return nil
}

func flowLess(a, b *flow) bool {
	ta, tb := a.nextT(), b.nextT()
	return ta < tb || (ta == tb && a.id < b.id)
}

func (g *gen) heapPush(f *flow) {
	g.heap = append(g.heap, f)
	i := len(g.heap) - 1
	for i > 0 {
		j := (i - 1) / 2
		if !flowLess(g.heap[i], g.heap[j]) {
			break
		}
		g.heap[i], g.heap[j] = g.heap[j], g.heap[i]
		i = j
	}
}

func (g *gen) heapPopTop() {
	n := len(g.heap) - 1
	g.heap[0] = g.heap[n]
	g.heap[n] = nil
	g.heap = g.heap[:n]
	if n > 0 {
		g.heapDown(0)
	}
}

func (g *gen) heapDown(i int) {
	h := g.heap
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && flowLess(h[r], h[l]) {
			m = r
		}
		if !flowLess(h[m], h[i]) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// Addresses.
var (
	gwMAC      = [6]byte{0x02, 0x00, 0x5e, 0x00, 0x00, 0x01}
	resolvers4 = []netip.Addr{netip.MustParseAddr("10.0.0.53"), netip.MustParseAddr("10.0.1.53")}
	resolvers6 = []netip.Addr{netip.MustParseAddr("fd00::53"), netip.MustParseAddr("fd00::1:53")}
)

func clientAddr(i int, v6 bool) netip.Addr {
	if v6 {
		return netip.AddrFrom16([16]byte{0xfd, 0, 0, 1, 6: 0, 14: byte(i >> 8), 15: byte(i)})
	}
	return netip.AddrFrom4([4]byte{10, 1, byte(i / 250), byte(1 + i%250)})
}

func serverAddr(i int, v6 bool) netip.Addr {
	if v6 {
		return netip.AddrFrom16([16]byte{0xfd, 0, 0, 2, 14: byte(i >> 8), 15: byte(i)})
	}
	return netip.AddrFrom4([4]byte{10, 2, byte(i / 250), byte(1 + i%250)})
}

func routerAddr(hop, i int, v6 bool) netip.Addr {
	if v6 {
		return netip.AddrFrom16([16]byte{0xfd, 0, 0, 0xff, 13: byte(hop), 15: byte(1 + i)})
	}
	return netip.AddrFrom4([4]byte{10, 255, byte(hop), byte(1 + i)})
}

func macOf(a netip.Addr) [6]byte {
	b := a.As16()
	return [6]byte{0x02, 0x00, b[12], b[13], b[14], b[15]}
}
