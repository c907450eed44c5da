package icmpfb

// Class is an ICMP error in plain words: Name is the class
// ("port-unreachable"), Detail a finer reason where the code gives one
// ("host-prohibited"), and Summary what it makes of the flow it quotes
// ("rejected", "filtered", "unreachable", "ttl-exceeded", or "" for errors
// that say nothing about reachability: frag-needed, redirect, ...).
type Class struct {
	Name, Detail string
	Summary      string
	// What the 4 bytes after the checksum hold.
	Rest restKind
}

type restKind uint8

const (
	restNone    restKind = iota
	restMTU16            // ICMPv4 frag-needed: next-hop MTU in the low 16 bits (RFC 1191)
	restMTU32            // ICMPv6 packet too big: 32-bit MTU
	restPtr8             // ICMPv4 parameter problem: pointer in the first byte
	restPtr32            // ICMPv6 parameter problem: 32-bit pointer
	restGateway          // ICMPv4 redirect: gateway address
)

// Summaries, strongest first (a flow keeps the strongest it drew).
const (
	sumFiltered    = "filtered"
	sumRejected    = "rejected"
	sumUnreachable = "unreachable"
	sumTTL         = "ttl-exceeded"
)

func summaryRank(s string) int {
	switch s {
	case sumFiltered:
		return 4
	case sumRejected:
		return 3
	case sumUnreachable:
		return 2
	case sumTTL:
		return 1
	}
	return 0
}

// ICMPv4 destination unreachable, by code (RFC 792, 1122, 1812).
var unreach4 = [16]Class{
	0:  {Name: "net-unreachable", Summary: sumUnreachable},
	1:  {Name: "host-unreachable", Summary: sumUnreachable},
	2:  {Name: "protocol-unreachable", Summary: sumRejected},
	3:  {Name: "port-unreachable", Summary: sumRejected},
	4:  {Name: "frag-needed", Rest: restMTU16},
	5:  {Name: "source-route-failed", Summary: sumUnreachable},
	6:  {Name: "net-unknown", Summary: sumUnreachable},
	7:  {Name: "host-unknown", Summary: sumUnreachable},
	8:  {Name: "source-host-isolated", Summary: sumUnreachable},
	9:  {Name: "admin-prohibited", Detail: "net-prohibited", Summary: sumFiltered},
	10: {Name: "admin-prohibited", Detail: "host-prohibited", Summary: sumFiltered},
	11: {Name: "net-unreachable", Detail: "for-tos", Summary: sumUnreachable},
	12: {Name: "host-unreachable", Detail: "for-tos", Summary: sumUnreachable},
	13: {Name: "admin-prohibited", Detail: "communication-prohibited", Summary: sumFiltered},
	14: {Name: "host-precedence-violation", Summary: sumFiltered},
	15: {Name: "precedence-cutoff", Summary: sumFiltered},
}

// ICMPv6 destination unreachable, by code (RFC 4443, 6550, 8754).
var unreach6 = [8]Class{
	0: {Name: "no-route", Summary: sumUnreachable},
	1: {Name: "admin-prohibited", Detail: "communication-prohibited", Summary: sumFiltered},
	2: {Name: "beyond-scope", Summary: sumUnreachable},
	3: {Name: "address-unreachable", Summary: sumUnreachable},
	4: {Name: "port-unreachable", Summary: sumRejected},
	5: {Name: "source-policy-failed", Summary: sumFiltered},
	6: {Name: "reject-route", Summary: sumFiltered},
	7: {Name: "source-routing-header-error", Summary: sumUnreachable},
}

var redirect4 = [4]string{"net", "host", "tos-net", "tos-host"}

var paramProb4 = [3]string{"pointer", "missing-option", "bad-length"}

var paramProb6 = [4]string{"erroneous-header-field", "unrecognized-next-header", "unrecognized-option", "incomplete-header-chain"}

// Classify names an ICMP (proto 1) or ICMPv6 (proto 58) error. ok is false
// for messages that are not errors (echo, ND, ...). Unknown codes of a
// known type get the type's generic name.
func Classify(proto, typ, code uint8) (c Class, ok bool) {
	if proto == 1 {
		switch typ {
		case 3:
			if int(code) < len(unreach4) {
				return unreach4[code], true
			}
			return Class{Name: "dest-unreachable", Summary: sumUnreachable}, true
		case 4:
			return Class{Name: "source-quench"}, true
		case 5:
			c = Class{Name: "redirect", Rest: restGateway}
			if int(code) < len(redirect4) {
				c.Detail = redirect4[code]
			}
			return c, true
		case 11:
			if code == 1 {
				return Class{Name: "reassembly-timeout"}, true
			}
			return Class{Name: "ttl-exceeded", Summary: sumTTL}, true
		case 12:
			c = Class{Name: "parameter-problem"}
			if int(code) < len(paramProb4) {
				c.Detail = paramProb4[code]
			}
			if code == 0 {
				c.Rest = restPtr8
			}
			return c, true
		}
		return Class{}, false
	}
	if proto != 58 {
		return Class{}, false
	}
	switch typ {
	case 1:
		if int(code) < len(unreach6) {
			return unreach6[code], true
		}
		return Class{Name: "dest-unreachable", Summary: sumUnreachable}, true
	case 2:
		return Class{Name: "packet-too-big", Rest: restMTU32}, true
	case 3:
		if code == 1 {
			return Class{Name: "reassembly-timeout"}, true
		}
		return Class{Name: "ttl-exceeded", Summary: sumTTL}, true
	case 4:
		c = Class{Name: "parameter-problem", Rest: restPtr32}
		if int(code) < len(paramProb6) {
			c.Detail = paramProb6[code]
		}
		return c, true
	}
	return Class{}, false
}
