package realtraffic

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// tshark -T json writes the dissection tree with repeated keys (every
// extension, every cipher suite); node keeps them, in order.
type node struct {
	keys []string
	vals []any // string, *node or []any
}

func parseOrdered(d *json.Decoder) (any, error) {
	tok, err := d.Token()
	if err != nil {
		return nil, err
	}
	switch tok := tok.(type) {
	case json.Delim:
		switch tok {
		case '{':
			n := &node{}
			for d.More() {
				k, err := d.Token()
				if err != nil {
					return nil, err
				}
				v, err := parseOrdered(d)
				if err != nil {
					return nil, err
				}
				n.keys = append(n.keys, k.(string))
				n.vals = append(n.vals, v)
			}
			_, err := d.Token()
			return n, err
		case '[':
			var a []any
			for d.More() {
				v, err := parseOrdered(d)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
			_, err := d.Token()
			return a, err
		}
		return nil, fmt.Errorf("unexpected %v", tok)
	case string:
		return tok, nil
	case nil:
		return "", nil
	default:
		return fmt.Sprint(tok), nil
	}
}

// all returns every value under key k anywhere below v, in tree order
// (arrays flattened).
func all(v any, k string) []any {
	var out []any
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case *node:
			for i, key := range v.keys {
				if key == k {
					out = append(out, flatten(v.vals[i])...)
					continue
				}
				walk(v.vals[i])
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(v)
	return out
}

func flatten(v any) []any {
	if a, ok := v.([]any); ok {
		var out []any
		for _, e := range a {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []any{v}
}

// strs is all() of the string values.
func strs(v any, k string) []string {
	var out []string
	for _, x := range all(v, k) {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func first(v any, k string) string {
	if s := strs(v, k); len(s) > 0 {
		return s[0]
	}
	return ""
}

// get is the direct child k of a node ("" if absent).
func (n *node) get(k string) any {
	for i, key := range n.keys {
		if key == k {
			return n.vals[i]
		}
	}
	return nil
}

func u16(t *testing.T, s string) uint16 {
	t.Helper()
	v, err := strconv.ParseUint(s, 0, 16)
	if err != nil {
		t.Fatalf("tshark value %q: %v", s, err)
	}
	return uint16(v)
}

func u16s(t *testing.T, ss []string) []uint16 {
	out := make([]uint16, len(ss))
	for i, s := range ss {
		out[i] = u16(t, s)
	}
	return out
}

// decimalNs reads a decimal number of units with `digits` decimals per
// nanosecond (9 for seconds, 6 for milliseconds) exactly.
func decimalNs(t *testing.T, s string, digits int) int64 {
	t.Helper()
	ip, fp, _ := strings.Cut(s, ".")
	if len(fp) > digits {
		t.Fatalf("%q has more than ns resolution", s)
	}
	fp += strings.Repeat("0", digits-len(fp))
	i, err1 := strconv.ParseInt(ip, 10, 64)
	f, err2 := strconv.ParseInt(fp, 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("bad decimal %q", s)
	}
	scale := int64(1)
	for range digits {
		scale *= 10
	}
	return i*scale + f
}

// tsHello is one ClientHello as tshark dissected it.
type tsHello struct {
	frame       int
	legacy      uint16
	versions    []uint16 // supported_versions
	ciphers     []uint16
	exts        []uint16 // in order
	sigAlgs     []uint16 // signature_algorithms (13) only
	alpn        []string
	sni         string
	ja3, ja3Str string
	segments    int // tcp.segment.count of the reassembled hello (0: one segment)
}

// tsServerHello is one ServerHello (or HelloRetryRequest).
type tsServerHello struct {
	frame         int
	legacy        uint16
	version       uint16 // supported_versions, if any
	cipher        uint16
	hrr           bool
	ja3s, ja3sStr string
}

// tsStream is one TCP connection.
type tsStream struct {
	client, server string // "ip port"
	initialRTT     string // tcp.analysis.initial_rtt, seconds
	hellos         []tsHello
	shellos        []tsServerHello
	// payload segments the client sent before the first ServerHello frame
	clientSegsBeforeSH int
	firstSH            int
}

type tsEcho struct {
	v6       bool
	id, seq  int
	resptime string // ms
}

type tsDNS struct {
	client string // "ip port"
	id     int
	time   string // seconds
}

type tsharkView struct {
	streams map[string]*tsStream // by client "ip port"
	echoes  []tsEcho
	dns     []tsDNS
}

// hrrRandom is the ServerHello.random of a HelloRetryRequest (RFC 8446 4.1.3).
const hrrRandom = "cf:21:ad:74:e5:9a:61:11:be:1d:8c:02:1e:65:b8:91:c2:a2:11:16:7a:bb:8c:5e:07:9e:09:e2:c8:a8:33:9c"

// runTshark dissects the capture once and gathers the hellos, RTTs,
// echo and DNS response times.
func runTshark(t *testing.T, bin, pcap string) *tsharkView {
	t.Helper()
	// Decode the test's server ports as TLS rather than relying on
	// tshark's heuristics, and let it reassemble out-of-order segments
	// (off by default in 4.0): under load, a split ClientHello's segments
	// were once seen in an order the heuristic did not recognise.
	args := []string{"-n", "-o", "tcp.reassemble_out_of_order:TRUE"}
	for _, p := range []int{portECDSA, portRSA, portHRR} {
		args = append(args, "-d", fmt.Sprintf("tcp.port==%d,tls", p))
	}
	cmd := exec.Command(bin, append(args, "-r", pcap, "-T", "json")...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, stderr.String())
	}
	d := json.NewDecoder(bytes.NewReader(out))
	root, err := parseOrdered(d)
	if err != nil && err != io.EOF {
		t.Fatalf("tshark JSON: %v", err)
	}
	v := &tsharkView{streams: map[string]*tsStream{}}
	byStream := map[string]*tsStream{}
	type seg struct {
		stream, from string
		frame        int
	}
	var payloadSegs []seg
	for _, p := range root.([]any) {
		layers := p.(*node).get("_source").(*node).get("layers").(*node)
		frame, _ := strconv.Atoi(first(layers.get("frame"), "frame.number"))
		src, dst := first(layers.get("ip"), "ip.src"), first(layers.get("ip"), "ip.dst")
		if l := layers.get("ipv6"); l != nil {
			src, dst = first(l, "ipv6.src"), first(l, "ipv6.dst")
		}
		if icmp := layers.get("icmp"); icmp != nil {
			if rt := first(icmp, "icmp.resptime"); rt != "" {
				id, _ := strconv.ParseInt(first(icmp, "icmp.ident"), 0, 32)
				sq, _ := strconv.ParseInt(first(icmp, "icmp.seq"), 0, 32)
				v.echoes = append(v.echoes, tsEcho{false, int(id), int(sq), rt})
			}
		}
		if icmp := layers.get("icmpv6"); icmp != nil {
			if rt := first(icmp, "icmpv6.resptime"); rt != "" {
				id, _ := strconv.ParseInt(first(icmp, "icmpv6.echo.identifier"), 0, 32)
				sq, _ := strconv.ParseInt(first(icmp, "icmpv6.echo.sequence_number"), 0, 32)
				v.echoes = append(v.echoes, tsEcho{true, int(id), int(sq), rt})
			}
		}
		if dns := layers.get("dns"); dns != nil && layers.get("udp") != nil {
			if tm := first(dns, "dns.time"); tm != "" {
				id, _ := strconv.ParseInt(first(dns, "dns.id"), 0, 32)
				v.dns = append(v.dns, tsDNS{dst + " " + first(layers.get("udp"), "udp.dstport"), int(id), tm})
			}
		}
		tcp, ok := layers.get("tcp").(*node)
		if !ok {
			continue
		}
		sid := first(tcp, "tcp.stream")
		from := src + " " + first(tcp, "tcp.srcport")
		to := dst + " " + first(tcp, "tcp.dstport")
		st := byStream[sid]
		if st == nil {
			// The first packet of each stream here is the client's SYN.
			st = &tsStream{client: from, server: to}
			byStream[sid] = st
		}
		if st.initialRTT == "" {
			st.initialRTT = first(tcp, "tcp.analysis.initial_rtt")
		}
		if n, _ := strconv.Atoi(first(tcp, "tcp.len")); n > 0 {
			payloadSegs = append(payloadSegs, seg{sid, from, frame})
		}
		segCount, _ := strconv.Atoi(first(layers.get("tcp.segments"), "tcp.segment.count"))
		for _, hs := range all(layers.get("tls"), "tls.handshake") {
			h, ok := hs.(*node)
			if !ok {
				continue
			}
			switch first(h, "tls.handshake.type") {
			case "1":
				ch := tsHello{
					frame:    frame,
					legacy:   u16(t, first(h, "tls.handshake.version")),
					versions: u16s(t, strs(h, "tls.handshake.extensions.supported_version")),
					ciphers:  u16s(t, strs(h.get("tls.handshake.ciphersuites"), "tls.handshake.ciphersuite")),
					alpn:     strs(h, "tls.handshake.extensions_alpn_str"),
					sni:      first(h, "tls.handshake.extensions_server_name"),
					ja3:      first(h, "tls.handshake.ja3"),
					ja3Str:   first(h, "tls.handshake.ja3_full"),
					segments: segCount,
				}
				for i, k := range h.keys {
					if !strings.HasPrefix(k, "Extension: ") {
						continue
					}
					e := h.vals[i]
					typ := u16(t, first(e, "tls.handshake.extension.type"))
					ch.exts = append(ch.exts, typ)
					if typ == 13 {
						ch.sigAlgs = u16s(t, strs(e, "tls.handshake.sig_hash_alg"))
					}
				}
				st.hellos = append(st.hellos, ch)
			case "2":
				sh := tsServerHello{
					frame:   frame,
					legacy:  u16(t, first(h, "tls.handshake.version")),
					cipher:  u16(t, first(h, "tls.handshake.ciphersuite")),
					hrr:     first(h, "tls.handshake.random") == hrrRandom,
					ja3s:    first(h, "tls.handshake.ja3s"),
					ja3sStr: first(h, "tls.handshake.ja3s_full"),
				}
				if sv := strs(h, "tls.handshake.extensions.supported_version"); len(sv) > 0 {
					sh.version = u16(t, sv[0])
				}
				st.shellos = append(st.shellos, sh)
				if st.firstSH == 0 {
					st.firstSH = frame
				}
			}
		}
	}
	for _, s := range payloadSegs {
		st := byStream[s.stream]
		if s.from == st.client && (st.firstSH == 0 || s.frame < st.firstSH) {
			st.clientSegsBeforeSH++
		}
	}
	for _, st := range byStream {
		v.streams[st.client] = st
	}
	return v
}
