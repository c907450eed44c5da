package appproto

import "bytes"

// Proto is an application protocol, named as Suricata names it.
type Proto uint8

const (
	Unknown Proto = iota
	Failed
	HTTP
	HTTP2
	TLS
	QUIC
	DNS
	SSH
	SMTP
	FTP
	IMAP
	POP3
	DHCP
	NTP
	SNMP
	SIP
	RDP
	SMB
	DCERPC
	KRB5
	LDAP
	MQTT
	BitTorrentDHT
	RFB
	TFTP
	IKE
	NFS
	numProtos
)

var protoNames = [numProtos]string{
	Unknown: "", Failed: "failed", HTTP: "http", HTTP2: "http2", TLS: "tls",
	QUIC: "quic", DNS: "dns", SSH: "ssh", SMTP: "smtp", FTP: "ftp",
	IMAP: "imap", POP3: "pop3", DHCP: "dhcp", NTP: "ntp", SNMP: "snmp",
	SIP: "sip", RDP: "rdp", SMB: "smb", DCERPC: "dcerpc", KRB5: "krb5",
	LDAP: "ldap", MQTT: "mqtt", BitTorrentDHT: "bittorrent-dht", RFB: "rfb",
	TFTP: "tftp", IKE: "ike", NFS: "nfs",
}

// String is Suricata's name ("" for Unknown).
func (p Proto) String() string {
	if p < numProtos {
		return protoNames[p]
	}
	return ""
}

// Verdict is what a probe makes of a direction's first bytes.
type Verdict uint8

const (
	NoMatch  Verdict = iota // no protocol matches these bytes
	Match                   // Proto is the protocol
	NeedMore                // too few bytes to tell yet
)

// Transport is the IP protocol a probe reads.
const (
	tcp = 6
	udp = 17
)

// Probe looks at the first payload bytes b of one direction of a flow
// (toServer: sent by the client) and names the protocol. Each check reads
// a handful of bytes; the ones that need more say NeedMore only when b is
// shorter than what they read. Only NTP falls back to the port (123): it
// has no signature beyond a 48-byte header whose every value is valid.
func Probe(ipProto uint8, toServer bool, sport, dport uint16, b []byte) (Proto, Verdict) {
	if len(b) == 0 {
		return Unknown, NeedMore
	}
	need := false
	try := func(p Proto, v Verdict) (Proto, bool) {
		if v == NeedMore {
			need = true
		}
		return p, v == Match
	}
	if ipProto == tcp {
		// QUIT opens FTP and SMTP sessions alike: the port decides.
		if toServer && prefixFold(b, "QUIT\r") == Match {
			switch dport {
			case 21:
				return FTP, Match
			case 25, 587, 2525:
				return SMTP, Match
			}
		}
		for _, c := range tcpChecks {
			if p, ok := try(c.p, c.f(b, toServer)); ok {
				return p, Match
			}
		}
	} else if ipProto == udp {
		for _, c := range udpChecks {
			if p, ok := try(c.p, c.f(b, toServer)); ok {
				return p, Match
			}
		}
		if (sport == 123 || dport == 123) && len(b) >= 48 && ntpOK(b) {
			return NTP, Match
		}
	}
	if need {
		return Unknown, NeedMore
	}
	return Unknown, NoMatch
}

type check struct {
	p Proto
	f func(b []byte, toServer bool) Verdict
}

// Order matters only where two checks could take the same bytes: the
// HTTP/2 preface ("PRI * HTTP/2.0") before HTTP methods, SIP (whose
// request line ends in SIP/2.0) before HTTP's OPTIONS.
var tcpChecks = []check{
	{TLS, isTLS},
	{SSH, isSSH},
	{HTTP2, isHTTP2},
	{SIP, isSIP},
	{HTTP, isHTTP},
	{SMB, isSMB},
	{DCERPC, isDCERPC},
	{RDP, isRDP},
	{RFB, isRFB},
	{MQTT, isMQTT},
	{SMTP, isSMTP},
	{FTP, isFTP},
	{POP3, isPOP3},
	{IMAP, isIMAP},
	{KRB5, func(b []byte, ts bool) Verdict { return framed(b, 4, ts, isKRB5) }},
	{LDAP, isLDAP},
	{NFS, func(b []byte, _ bool) Verdict { return framedRPC(b) }},
	{DNS, func(b []byte, ts bool) Verdict { return framed(b, 2, ts, isDNS) }},
}

var udpChecks = []check{
	{QUIC, isQUIC},
	{DHCP, isDHCP},
	{DNS, isDNS},
	{SIP, isSIP},
	{SNMP, isSNMP},
	{KRB5, isKRB5},
	{LDAP, isLDAP},
	{TFTP, isTFTP},
	{BitTorrentDHT, isDHT},
	{IKE, isIKE},
	{NFS, func(b []byte, _ bool) Verdict { return isRPC(b, 48) }},
}

// Confirm reports whether b, the first bytes of a flow's other
// direction, fit p, the protocol its first direction was found to be: the
// line-based protocols (FTP, SMTP, POP3, IMAP) accept any text line there,
// since their commands overlap (USER opens both FTP and POP3 sessions);
// the others need their own check to pass.
func Confirm(p Proto, ipProto uint8, toServer bool, b []byte) Verdict {
	if len(b) == 0 {
		return NeedMore
	}
	switch p {
	case FTP, SMTP, POP3, IMAP:
		c := b[0]
		if (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '*' || c == '+' || c == '-' {
			return Match
		}
		return NoMatch
	case NTP:
		if len(b) < 48 {
			return NeedMore
		}
		if ntpOK(b) {
			return Match
		}
		return NoMatch
	}
	list := udpChecks
	if ipProto == tcp {
		list = tcpChecks
	}
	for _, c := range list {
		if c.p == p {
			return c.f(b, toServer)
		}
	}
	return NoMatch
}

// need returns NeedMore if b is shorter than n, else NoMatch.
func need(b []byte, n int) Verdict {
	if len(b) < n {
		return NeedMore
	}
	return NoMatch
}

// prefix: Match when b starts with s, NeedMore when b is a proper prefix
// of s.
func prefix(b []byte, s string) Verdict {
	if len(b) < len(s) {
		if string(b) == s[:len(b)] {
			return NeedMore
		}
		return NoMatch
	}
	if string(b[:len(s)]) == s {
		return Match
	}
	return NoMatch
}

func anyPrefix(b []byte, ss []string) Verdict {
	v := NoMatch
	for _, s := range ss {
		switch prefix(b, s) {
		case Match:
			return Match
		case NeedMore:
			v = NeedMore
		}
	}
	return v
}

// prefixFold is prefix with ASCII case folding.
func prefixFold(b []byte, s string) Verdict {
	n := min(len(b), len(s))
	if !bytes.EqualFold(b[:n], []byte(s[:n])) {
		return NoMatch
	}
	if n < len(s) {
		return NeedMore
	}
	return Match
}

func anyPrefixFold(b []byte, ss []string) Verdict {
	v := NoMatch
	for _, s := range ss {
		switch prefixFold(b, s) {
		case Match:
			return Match
		case NeedMore:
			v = NeedMore
		}
	}
	return v
}

// isTLS: a record header (handshake, alert, CCS or application data,
// version 3.0-3.4), or an SSLv2-framed ClientHello.
func isTLS(b []byte, _ bool) Verdict {
	if len(b) < 3 {
		if b[0] >= 0x14 && b[0] <= 0x17 && (len(b) < 2 || b[1] == 3) {
			return NeedMore
		}
		if b[0]&0x80 != 0 {
			return NeedMore
		}
		return NoMatch
	}
	if b[0] >= 0x14 && b[0] <= 0x17 && b[1] == 3 && b[2] <= 4 {
		return Match
	}
	// SSLv2 record: 2-byte length with the top bit set, msg 1
	// (ClientHello), version 2.0 or 3.x.
	if b[0]&0x80 != 0 {
		if len(b) < 5 {
			return NeedMore
		}
		if b[2] == 1 && ((b[3] == 0 && b[4] == 2) || (b[3] == 3 && b[4] <= 4)) {
			return Match
		}
	}
	return NoMatch
}

func isSSH(b []byte, _ bool) Verdict { return prefix(b, "SSH-") }

func isHTTP2(b []byte, ts bool) Verdict {
	if !ts {
		return NoMatch
	}
	return prefix(b, "PRI * HTTP/2.0\r\n")
}

// httpMethods are those Suricata's HTTP parser registers (RFC 7231 and
// WebDAV).
var httpMethods = []string{
	"GET ", "POST ", "HEAD ", "PUT ", "DELETE ", "OPTIONS ", "TRACE ", "CONNECT ",
	"PATCH ", "PROPFIND ", "PROPPATCH ", "MKCOL ", "COPY ", "MOVE ", "LOCK ",
	"UNLOCK ", "CHECKOUT ", "UNCHECKOUT ", "CHECKIN ", "UPDATE ", "LABEL ",
	"REPORT ", "MKWORKSPACE ", "MKACTIVITY ", "MERGE ", "INVALID ",
	"VERSION-CONTROL ", "BASELINE-CONTROL ", "SEARCH ", "POLL ", "ORDERPATCH ",
	"ACL ", "SUBSCRIBE ", "UNSUBSCRIBE ", "NOTIFY ", "BMOVE ", "BDELETE ",
	"BPROPFIND ", "BPROPPATCH ", "BCOPY ",
}

func isHTTP(b []byte, ts bool) Verdict {
	if !ts {
		return prefix(b, "HTTP/")
	}
	return anyPrefix(b, httpMethods)
}

var sipMethods = []string{"INVITE ", "REGISTER ", "OPTIONS ", "ACK ", "BYE ", "CANCEL ", "PRACK ", "SUBSCRIBE ", "NOTIFY ", "PUBLISH ", "INFO ", "REFER ", "MESSAGE ", "UPDATE "}

// isSIP: a response status line, or a request line whose version is
// SIP/2.0 (OPTIONS and friends are also HTTP methods).
func isSIP(b []byte, _ bool) Verdict {
	if v := prefix(b, "SIP/2.0 "); v != NoMatch {
		return v
	}
	v := anyPrefix(b, sipMethods)
	if v != Match {
		return v
	}
	line := b
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		line = b[:i]
	} else if len(b) < 256 {
		return NeedMore
	}
	line = bytes.TrimRight(line, "\r")
	if bytes.HasSuffix(line, []byte(" SIP/2.0")) {
		return Match
	}
	return NoMatch
}

// isSMB: a NetBIOS session message carrying SMB1, SMB2 or SMB3
// (transform header), or the NetBIOS session request (two encoded names)
// and positive response that open SMB on port 139.
func isSMB(b []byte, ts bool) Verdict {
	if ts && b[0] == 0x81 {
		if len(b) < 72 {
			return NeedMore
		}
		if b[1] == 0 && b[4] == 0x20 && netbiosName(b[5:37]) && b[38] == 0x20 && netbiosName(b[39:71]) {
			return Match
		}
		return NoMatch
	}
	if !ts && len(b) == 4 && string(b) == "\x82\x00\x00\x00" {
		return Match
	}
	if len(b) < 8 {
		if b[0] != 0 {
			return NoMatch
		}
		return NeedMore
	}
	if b[0] != 0 {
		return NoMatch
	}
	if (b[4] == 0xff || b[4] == 0xfe || b[4] == 0xfd) && string(b[5:8]) == "SMB" {
		return Match
	}
	return NoMatch
}

// isDCERPC: a connection-oriented DCE/RPC PDU header, version 5.0, whose
// frag length covers at least the header.
func isDCERPC(b []byte, _ bool) Verdict {
	if len(b) < 10 {
		if b[0] != 5 || (len(b) > 1 && b[1] != 0) {
			return NoMatch
		}
		return NeedMore
	}
	if b[0] != 5 || b[1] != 0 || b[2] > 19 || (b[4] != 0x10 && b[4] != 0) {
		return NoMatch
	}
	fl := int(b[8]) | int(b[9])<<8
	if b[4] == 0 {
		fl = int(b[8])<<8 | int(b[9])
	}
	if fl < 16 {
		return NoMatch
	}
	return Match
}

// isRDP: TPKT version 3 with an X.224 Connection Request (to the server)
// or Connection Confirm (to the client).
func isRDP(b []byte, ts bool) Verdict {
	if len(b) < 6 {
		if b[0] != 3 || (len(b) > 1 && b[1] != 0) {
			return NoMatch
		}
		return NeedMore
	}
	if b[0] != 3 || b[1] != 0 {
		return NoMatch
	}
	tpdu := b[5] & 0xf0
	if (ts && tpdu == 0xe0) || (!ts && tpdu == 0xd0) {
		return Match
	}
	return NoMatch
}

func isRFB(b []byte, _ bool) Verdict {
	if v := prefix(b, "RFB "); v != Match {
		return v
	}
	if len(b) < 12 {
		return NeedMore
	}
	if b[7] == '.' && b[11] == '\n' {
		return Match
	}
	return NoMatch
}

// isMQTT: a CONNECT whose protocol name is MQTT (3.1.1, 5) or MQIsdp
// (3.1), or a CONNACK of 2 (v3) or more (v5) bytes.
func isMQTT(b []byte, ts bool) Verdict {
	// PINGREQ / PINGRESP, alone in their segment: a connection picked up
	// after its CONNECT.
	if len(b) == 2 && b[1] == 0 && ((ts && b[0] == 0xc0) || (!ts && b[0] == 0xd0)) {
		return Match
	}
	if !ts {
		if b[0] != 0x20 {
			return NoMatch
		}
		if len(b) < 2 {
			return NeedMore
		}
		if b[1] >= 2 && b[1] < 128 && len(b) == int(b[1])+2 {
			return Match
		}
		return NoMatch
	}
	if b[0] != 0x10 {
		return NoMatch
	}
	// Remaining length: 1 to 4 bytes.
	i := 1
	for ; i < len(b) && i <= 4 && b[i]&0x80 != 0; i++ {
	}
	if i > 4 {
		return NoMatch
	}
	if i+1 >= len(b) {
		return NeedMore
	}
	r := b[i+1:]
	if v := prefix(r, "\x00\x04MQTT"); v != NoMatch {
		return v
	}
	return prefix(r, "\x00\x06MQIsdp")
}

// reply reads a server's "NNN" reply code line start: the code, and
// whether the line is complete enough to judge.
func replyCode(b []byte) (string, Verdict) {
	if len(b) < 4 {
		for _, c := range b[:min(len(b), 3)] {
			if c < '0' || c > '9' {
				return "", NoMatch
			}
		}
		return "", NeedMore
	}
	for _, c := range b[:3] {
		if c < '0' || c > '9' {
			return "", NoMatch
		}
	}
	if b[3] != ' ' && b[3] != '-' {
		return "", NoMatch
	}
	return string(b[:3]), Match
}

// firstLine is b up to the first newline, and whether one was found.
func firstLine(b []byte) ([]byte, bool) {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i], true
	}
	return b, false
}

func containsFold(b []byte, s string) bool {
	n := len(s)
	for i := 0; i+n <= len(b); i++ {
		if bytes.EqualFold(b[i:i+n], []byte(s)) {
			return true
		}
	}
	return false
}

// isSMTP: a client's EHLO/HELO/QUIT, or a server's 220 greeting that
// names SMTP (a bare 220 could be FTP).
func isSMTP(b []byte, ts bool) Verdict {
	if ts {
		return anyPrefixFold(b, []string{"EHLO ", "HELO ", "EHLO\r", "HELO\r", "EHLO\n", "HELO\n"})
	}
	return greeting(b, "SMTP")
}

func greeting(b []byte, name string) Verdict {
	code, v := replyCode(b)
	if v != Match {
		return v
	}
	if code != "220" {
		return NoMatch
	}
	line, full := firstLine(b)
	if containsFold(line, name) {
		return Match
	}
	if !full && len(b) < 512 {
		return NeedMore
	}
	return NoMatch
}

// isFTP: a client's first command (USER, AUTH TLS/SSL, ...) or a 220
// greeting that names FTP.
func isFTP(b []byte, ts bool) Verdict {
	if ts {
		// Not PASS: IRC clients start with it.
		return anyPrefixFold(b, []string{"USER ", "PORT ", "AUTH TLS", "AUTH SSL", "FEAT\r", "SYST\r"})
	}
	return greeting(b, "FTP")
}

func isPOP3(b []byte, ts bool) Verdict {
	if ts {
		return anyPrefixFold(b, []string{"CAPA\r", "APOP ", "STLS\r"})
	}
	return anyPrefix(b, []string{"+OK ", "+OK\r", "-ERR "})
}

func isIMAP(b []byte, ts bool) Verdict {
	if ts {
		return NoMatch // a tag of the client's choosing, then a command
	}
	return anyPrefix(b, []string{"* OK ", "* PREAUTH ", "* BYE "})
}

// framed strips the 4-byte (Kerberos) or 2-byte (DNS) record length of a
// TCP message, checking it against what follows, and applies f.
func framed(b []byte, n int, ts bool, f func([]byte, bool) Verdict) Verdict {
	if b[0] > 1 {
		// First messages (queries, AS/TGS requests and their answers)
		// are far below 512 bytes or 16 MiB: a larger length is text or
		// another protocol, not worth waiting for.
		return NoMatch
	}
	if len(b) <= n {
		return NeedMore
	}
	l := 0
	for _, c := range b[:n] {
		l = l<<8 | int(c)
	}
	if l == 0 || l > 1<<20 {
		return NoMatch
	}
	return f(b[n:], ts)
}

// der reads a DER tag and length at b, returning the tag, the content
// length and the header size (0: incomplete or invalid).
func der(b []byte) (tag byte, l, hdr int) {
	if len(b) < 2 {
		return 0, 0, 0
	}
	tag = b[0]
	if b[1] < 0x80 {
		return tag, int(b[1]), 2
	}
	n := int(b[1] & 0x7f)
	if n == 0 || n > 3 || len(b) < 2+n {
		return 0, 0, 0
	}
	for _, c := range b[2 : 2+n] {
		l = l<<8 | int(c)
	}
	return tag, l, 2 + n
}

// isKRB5: an AS-REQ, AS-REP, TGS-REQ, TGS-REP or KRB-ERROR (application
// tags 10-13, 30) whose inner SEQUENCE starts with pvno 5 (msg-type for
// KRB-ERROR follows pvno as well).
func isKRB5(b []byte, _ bool) Verdict {
	switch b[0] {
	case 0x6a, 0x6b, 0x6c, 0x6d, 0x7e:
	default:
		return NoMatch
	}
	_, _, h := der(b)
	if h == 0 {
		return NeedMore
	}
	r := b[h:]
	tag, _, h2 := der(r)
	if h2 == 0 {
		return NeedMore
	}
	if tag != 0x30 {
		return NoMatch
	}
	r = r[h2:]
	// [0] or [1] INTEGER 5: a0 03 02 01 05 (pvno), tagged [0] in
	// KRB-ERROR and KDC-REP, [1] in KDC-REQ.
	if len(r) < 5 {
		return NeedMore
	}
	if (r[0] == 0xa0 || r[0] == 0xa1) && r[1] == 3 && r[2] == 2 && r[3] == 1 && r[4] == 5 {
		return Match
	}
	return NoMatch
}

// isLDAP: LDAPMessage ::= SEQUENCE { messageID INTEGER, protocolOp
// [APPLICATION 0-25] ... }.
func isLDAP(b []byte, _ bool) Verdict {
	if b[0] != 0x30 {
		return NoMatch
	}
	_, _, h := der(b)
	if h == 0 {
		return NeedMore
	}
	r := b[h:]
	tag, l, h2 := der(r)
	if h2 == 0 {
		return NeedMore
	}
	if tag != 0x02 || l < 1 || l > 4 {
		return NoMatch
	}
	r = r[h2:]
	if len(r) < l+1 {
		return NeedMore
	}
	op := r[l]
	if op&0xc0 != 0x40 || op&0x1f > 25 {
		return NoMatch
	}
	return Match
}

// isDNS: a header whose opcode and counts are plausible, then the first
// question's name, type and class. NetBIOS name service (DNS's format,
// names of 32 letters A-P) is not DNS, as Suricata has it.
func isDNS(b []byte, _ bool) Verdict {
	if len(b) < 12 {
		return NeedMore
	}
	op := b[2] >> 3 & 0xf
	if op > 6 || op == 3 {
		return NoMatch
	}
	qd := int(b[4])<<8 | int(b[5])
	an := int(b[6])<<8 | int(b[7])
	ns := int(b[8])<<8 | int(b[9])
	ar := int(b[10])<<8 | int(b[11])
	if an > 256 || ns > 256 || ar > 256 {
		return NoMatch
	}
	// Questions (mDNS asks several at once); or, in a response (mDNS
	// announcements), none and an answer whose owner name, type and
	// class are read the same way.
	if qd > 32 || (qd == 0 && (an == 0 || b[2]&0x80 == 0)) {
		return NoMatch
	}
	i := 12
	for labels := 0; ; labels++ {
		if i >= len(b) || labels > 127 {
			return NoMatch
		}
		l := int(b[i])
		if l == 0 {
			i++
			break
		}
		if l > 63 {
			return NoMatch
		}
		if labels == 0 && l == 32 && i+33 <= len(b) && netbiosName(b[i+1:i+33]) {
			return NoMatch
		}
		i += 1 + l
	}
	if i+4 > len(b) {
		return NoMatch
	}
	qtype := int(b[i])<<8 | int(b[i+1])
	class := (int(b[i+2])<<8 | int(b[i+3])) & 0x7fff // mDNS: top bit is unicast-response
	if qtype == 0 || (class != 1 && class != 3 && class != 4 && class != 254 && class != 255) {
		return NoMatch
	}
	return Match
}

func netbiosName(b []byte) bool {
	for _, c := range b {
		if c < 'A' || c > 'P' {
			return false
		}
	}
	return true
}

// isQUIC: a long header (fixed bit set) with a QUIC version (1, 2,
// IETF drafts, Google's Q0xx/T0xx), or a Google QUIC public header whose
// version flag is set.
func isQUIC(b []byte, _ bool) Verdict {
	if len(b) < 5 {
		return NeedMore
	}
	if b[0]&0xc0 == 0xc0 {
		v := uint32(b[1])<<24 | uint32(b[2])<<16 | uint32(b[3])<<8 | uint32(b[4])
		switch {
		case v == 1, v == 0x6b3343cf, v>>8 == 0xff0000, v == 0:
			return Match
		case (b[1] == 'Q' || b[1] == 'T') && b[2] == '0':
			return Match
		}
		return NoMatch
	}
	// gQUIC (Q043 and older): public flags with the version bit, an
	// 8-byte connection id, then "Q0nn".
	if b[0]&0x09 == 0x09 && b[0]&0x80 == 0 {
		if len(b) < 13 {
			return NeedMore
		}
		if b[9] == 'Q' && b[10] == '0' {
			return Match
		}
	}
	return NoMatch
}

// isDHCP: BOOTP with the DHCP magic cookie.
func isDHCP(b []byte, _ bool) Verdict {
	if len(b) < 240 {
		if b[0] == 1 || b[0] == 2 {
			return NeedMore
		}
		return NoMatch
	}
	if (b[0] == 1 || b[0] == 2) && b[1] == 1 && b[2] == 6 && string(b[236:240]) == "\x63\x82\x53\x63" {
		return Match
	}
	return NoMatch
}

// isSNMP: Message ::= SEQUENCE { version INTEGER (0, 1, 3), ... }; v1
// and v2c carry an OCTET STRING community then a PDU ([0]-[8]), v3 a
// header SEQUENCE.
func isSNMP(b []byte, _ bool) Verdict {
	if b[0] != 0x30 {
		return NoMatch
	}
	_, _, h := der(b)
	if h == 0 {
		return NeedMore
	}
	r := b[h:]
	if len(r) < 3 {
		return NeedMore
	}
	if r[0] != 2 || r[1] != 1 || (r[2] != 0 && r[2] != 1 && r[2] != 3) {
		return NoMatch
	}
	ver := r[2]
	r = r[3:]
	tag, l, h2 := der(r)
	if h2 == 0 {
		return NeedMore
	}
	if ver == 3 {
		if tag == 0x30 {
			return Match
		}
		return NoMatch
	}
	if tag != 0x04 {
		return NoMatch
	}
	r = r[h2:]
	if len(r) <= l {
		return NeedMore
	}
	if pdu := r[l]; pdu >= 0xa0 && pdu <= 0xa8 {
		return Match
	}
	return NoMatch
}

// isTFTP: RRQ or WRQ: opcode, file name, NUL, a known mode, NUL.
func isTFTP(b []byte, _ bool) Verdict {
	if len(b) < 4 {
		return need(b, 4)
	}
	if b[0] != 0 || (b[1] != 1 && b[1] != 2) {
		return NoMatch
	}
	i := bytes.IndexByte(b[2:], 0)
	if i <= 0 {
		return NoMatch
	}
	mode := b[2+i+1:]
	j := bytes.IndexByte(mode, 0)
	if j < 0 {
		return NoMatch
	}
	switch string(bytes.ToLower(mode[:j])) {
	case "netascii", "octet", "mail":
		return Match
	}
	return NoMatch
}

// isDHT: a bencoded KRPC dictionary ("d1:", with a "1:y1:" type key).
func isDHT(b []byte, _ bool) Verdict {
	if v := prefix(b, "d1:"); v != Match {
		return v
	}
	if bytes.Contains(b, []byte("1:y1:q")) || bytes.Contains(b, []byte("1:y1:r")) || bytes.Contains(b, []byte("1:y1:e")) {
		return Match
	}
	return NoMatch
}

// isIKE: an ISAKMP header (v1 or v2) whose length is the datagram's
// (after the 4 zero bytes of NAT traversal, if present).
func isIKE(b []byte, _ bool) Verdict {
	if len(b) >= 4 && b[0] == 0 && b[1] == 0 && b[2] == 0 && b[3] == 0 {
		b = b[4:]
	}
	if len(b) < 28 {
		return NoMatch
	}
	if b[17] != 0x10 && b[17] != 0x20 {
		return NoMatch
	}
	l := int(b[24])<<24 | int(b[25])<<16 | int(b[26])<<8 | int(b[27])
	if l != len(b) || b[18] == 0 {
		return NoMatch
	}
	return Match
}

// isRPC: an ONC RPC call (RPC version 2) to the NFS program (100003),
// versions 2 to 4, in either direction: a capture picked up midstream
// may give the flow's first packet to the server, and the call says
// which side it is. Replies do not name the program and are left to the
// call's direction. As Suricata's probes: a datagram of at least min (48)
// bytes (a NULL call without credentials, 40 bytes, is not taken: nfs3-01
// says failed); over TCP, a record of at least 40 (framedRPC).
func isRPC(b []byte, min int) Verdict {
	if len(b) < 20 {
		return need(b, 20)
	}
	be := func(i int) uint32 { return uint32(b[i])<<24 | uint32(b[i+1])<<16 | uint32(b[i+2])<<8 | uint32(b[i+3]) }
	if be(4) != 0 || be(8) != 2 || be(12) != 100003 || be(16) < 2 || be(16) > 4 {
		return NoMatch
	}
	if len(b) < min { // a whole datagram
		return NoMatch
	}
	return Match
}

// framedRPC: isRPC after TCP record marking (last-fragment bit, length).
func framedRPC(b []byte) Verdict {
	if len(b) < 4 {
		return NeedMore
	}
	if b[0]&0x80 == 0 {
		return NoMatch
	}
	l := int(b[0]&0x7f)<<24 | int(b[1])<<16 | int(b[2])<<8 | int(b[3])
	if l < 40 {
		return NoMatch
	}
	return isRPC(b[4:], 0)
}

// ntpOK: version 1-4 and a mode other than 0 (reserved).
func ntpOK(b []byte) bool {
	v := b[0] >> 3 & 7
	return v >= 1 && v <= 4 && b[0]&7 != 0
}

// IsHTTP is the HTTP/1.x check alone (stages/http starts a flow's parser
// with it): a request method to the server, "HTTP/" to the client.
func IsHTTP(b []byte, toServer bool) Verdict {
	if len(b) == 0 {
		return NeedMore
	}
	return isHTTP(b, toServer)
}
