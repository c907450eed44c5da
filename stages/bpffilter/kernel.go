package bpffilter

import (
	"net/netip"
	"strconv"
	"strings"
)

// KernelSubset is the part of an expression that the eBPF capture program
// can test in the kernel (sources/ebpf.KernelFilter): an address, an IP
// protocol and a port, all ANDed.
//
// It is only ever a pre-filter: the eBPF source still runs the whole
// expression in user space (Filter) on what the kernel passed, so results
// are exactly tcpdump's. KernelSubset therefore returns a condition that
// every packet matching the expression also meets (a superset), and gives
// up on a field (leaves it zero) wherever that is not certain:
//
//   - only a top-level conjunction ("A and B and ...") is read; an
//     expression with or, not or parentheses yields nothing;
//   - conjuncts it does not recognise are skipped (skipping a conjunct
//     only widens the match);
//   - "host A" alone also matches ARP/RARP in pcap-filter(7), which the
//     kernel subset cannot pass, so the address is used only when another
//     conjunct requires IP (ip, ip6, tcp, udp, sctp, icmp, port, or
//     "ip host"/"ip6 host");
//   - "tcp"/"udp"/"sctp"/"icmp6" match IPv6 through a fragment header in
//     libpcap, which the kernel program does not walk, so the protocol is
//     used only with a port, an IPv4 address or "ip", or for the IPv4-only
//     protocols icmp and igmp.
//
// Recognised: [ip|ip6] [src|dst] host ADDR, [tcp|udp|sctp] [src|dst] port
// N, tcp, udp, sctp, icmp, icmp6, igmp, ip, ip6.
func KernelSubset(expr string) (addr netip.Addr, proto uint8, port uint16) {
	expr = strings.ReplaceAll(expr, "&&", " and ")
	toks := strings.Fields(expr)
	for _, t := range toks {
		switch t {
		case "or", "||", "not", "!":
			return
		}
		if strings.ContainsAny(t, "()!|") {
			return
		}
	}
	var (
		needIP, v4Only bool
		hostAddr       netip.Addr
		hostQualified  bool
		p              uint8
		pSafe          bool
	)
	setProto := func(v uint8, safe bool) {
		if p == 0 {
			p, pSafe = v, safe
		}
	}
	var cur []string
	flush := func() {
		c := cur
		cur = nil
		if len(c) == 0 {
			return
		}
		fam := ""
		if c[0] == "ip" || c[0] == "ip6" {
			fam = c[0]
			c = c[1:]
			if len(c) == 0 {
				needIP = true
				v4Only = v4Only || fam == "ip"
				return
			}
		}
		l4 := ""
		switch c[0] {
		case "tcp", "udp", "sctp":
			if fam != "" {
				return
			}
			l4 = c[0]
			c = c[1:]
			if len(c) == 0 {
				needIP = true
				setProto(map[string]uint8{"tcp": 6, "udp": 17, "sctp": 132}[l4], false)
				return
			}
		case "icmp", "igmp":
			if fam == "" && len(c) == 1 {
				needIP, v4Only = true, true
				setProto(map[string]uint8{"icmp": 1, "igmp": 2}[c[0]], true)
			}
			return
		case "icmp6":
			if fam == "" && len(c) == 1 {
				needIP = true
				setProto(58, false)
			}
			return
		}
		if len(c) > 0 && (c[0] == "src" || c[0] == "dst") {
			c = c[1:]
		}
		if len(c) != 2 {
			return
		}
		switch c[0] {
		case "host":
			if l4 != "" {
				return
			}
			a, err := netip.ParseAddr(c[1])
			if err != nil || (fam == "ip" && !a.Is4()) || (fam == "ip6" && !a.Is6()) || hostAddr.IsValid() {
				return
			}
			hostAddr = a
			if fam != "" {
				hostQualified, needIP = true, true
			}
		case "port":
			n, err := strconv.ParseUint(c[1], 10, 16)
			if err != nil || n == 0 || fam != "" {
				return
			}
			needIP = true
			if port == 0 {
				port = uint16(n)
				if l4 != "" {
					setProto(map[string]uint8{"tcp": 6, "udp": 17, "sctp": 132}[l4], true)
				}
			}
		}
	}
	for _, t := range toks {
		if t == "and" {
			flush()
			continue
		}
		cur = append(cur, t)
	}
	flush()
	if hostAddr.IsValid() && (needIP || hostQualified) {
		addr = hostAddr.Unmap()
		if addr.Is4() {
			v4Only = true
		}
	}
	if p != 0 && (pSafe || port != 0 || v4Only) {
		proto = p
	}
	return addr, proto, port
}
