package http

import (
	"bytes"
	"strconv"
	"strings"
)

// Caps of one direction's message parser.
const (
	// MaxHeaderBytes caps a message's start line and headers (and a
	// chunk-size or trailer line): a longer block is not parsed, the
	// direction is given up and the cap counted.
	MaxHeaderBytes = 16 << 10
	// MaxHeaders caps the header lines read per message; the rest are
	// skipped (counted).
	MaxHeaders = 256
)

// Message-parser states.
const (
	stHeaders    = iota // reading a start line and headers
	stBody              // skipping rem body bytes
	stChunkSize         // reading a chunk-size line
	stChunkData         // skipping rem chunk bytes
	stChunkCRLF         // the CRLF after a chunk
	stTrailers          // trailer lines after the last chunk
	stUntilClose        // the body runs to the end of the connection
	stDead              // not parsed any further
)

// head is the part of a message's header block that events use.
type head struct {
	// Request.
	method, uri, version string
	host, ua, referer    string
	xff                  string
	// Response.
	status      int
	statusText  string // a status that is not a number
	ctype, loc  string
	contentLen  int64 // -1: none
	chunked     bool
	upgrade     bool // Connection: upgrade
	tooMany     bool // more than MaxHeaders header lines
	interimResp bool // 1xx
}

// parseHead reads a header block (start line, headers, without the empty
// line). It reports false when the start line is not HTTP's.
func parseHead(block []byte, request bool, h *head) bool {
	*h = head{contentLen: -1}
	// The text fields are copied out of block together, into one string
	// (one allocation per message rather than one per field).
	var text [nText][]byte
	line, rest := cutLine(block)
	if request {
		// METHOD SP request-target [SP HTTP-version]
		sp := bytes.IndexByte(line, ' ')
		if sp <= 0 {
			return false
		}
		h.method = intern(line[:sp], methods)
		r := bytes.TrimLeft(line[sp+1:], " ")
		if i := bytes.LastIndexByte(r, ' '); i >= 0 && bytes.HasPrefix(r[i+1:], []byte("HTTP/")) {
			text[tURI], h.version = bytes.TrimRight(r[:i], " "), intern(r[i+1:], versions)
		} else {
			text[tURI] = r // HTTP/0.9
		}
	} else {
		// HTTP-version SP status-code SP [reason]
		if !bytes.HasPrefix(line, []byte("HTTP/")) {
			return false
		}
		sp := bytes.IndexByte(line, ' ')
		if sp < 0 {
			return false
		}
		h.version = intern(line[:sp], versions)
		code := bytes.TrimLeft(line[sp+1:], " ")
		if i := bytes.IndexByte(code, ' '); i >= 0 {
			code = code[:i]
		}
		n, err := strconv.Atoi(string(code))
		switch {
		case err == nil && n >= 100 && n <= 999:
			h.status = n
			h.interimResp = n < 200
		case len(code) > 0 && len(code) <= 16:
			// Not a number ("2XX"): kept as text, as Suricata's
			// status_string, and the response is read on.
			h.statusText = string(code)
		default:
			return false
		}
	}
	count := 0
	for len(rest) > 0 {
		line, rest = cutLine(rest)
		if len(line) == 0 {
			continue
		}
		if count++; count > MaxHeaders {
			h.tooMany = true
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue
		}
		name := bytes.TrimRight(line[:colon], " \t")
		val := bytes.Trim(line[colon+1:], " \t")
		switch {
		case request && eqFold(name, "host"):
			if len(text[tHost]) == 0 { // the first that is not empty
				text[tHost] = val
			}
		case request && eqFold(name, "user-agent"):
			text[tUA] = val
		case request && eqFold(name, "referer"):
			text[tReferer] = val
		case request && eqFold(name, "x-forwarded-for"):
			text[tXFF] = val
		case !request && eqFold(name, "content-type"):
			text[tCType] = val
		case !request && eqFold(name, "location"):
			text[tLoc] = val
		case eqFold(name, "content-length"):
			if n, err := strconv.ParseInt(string(val), 10, 64); err == nil && n >= 0 {
				h.contentLen = n
			}
		case eqFold(name, "transfer-encoding"):
			h.chunked = containsFold(val, "chunked")
		case eqFold(name, "connection"):
			h.upgrade = h.upgrade || containsFold(val, "upgrade")
		}
	}
	n := 0
	for _, t := range text {
		n += len(t)
	}
	if n == 0 {
		return true
	}
	var sb strings.Builder
	sb.Grow(n)
	for _, t := range text {
		sb.Write(t)
	}
	all := sb.String()
	var str [nText]string
	for i, off := 0, 0; i < nText; i++ {
		str[i] = all[off : off+len(text[i])]
		off += len(text[i])
	}
	h.uri, h.host, h.ua, h.referer, h.xff, h.ctype, h.loc = str[tURI], str[tHost], str[tUA], str[tReferer], str[tXFF], str[tCType], str[tLoc]
	return true
}

// The text fields of a head, by index.
const (
	tURI = iota
	tHost
	tUA
	tReferer
	tXFF
	tCType
	tLoc
	nText
)

// cutLine splits b at its first LF, dropping a CR before it.
func cutLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		line = b
	} else {
		line, rest = b[:i], b[i+1:]
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

func eqFold(b []byte, s string) bool { return len(b) == len(s) && bytes.EqualFold(b, []byte(s)) }

func containsFold(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		if bytes.EqualFold(b[i:i+len(s)], []byte(s)) {
			return true
		}
	}
	return false
}

// headerEnd finds the end of a header block in b, scanning from from
// (where the last scan stopped): it returns the block's length (without
// the empty line) and the bytes to consume, or -1. Empty lines before the
// start line (allowed between pipelined messages) are counted in skip.
func headerEnd(b []byte, from int) (block, consumed, skip int) {
	// Leading CRLFs.
	for skip < len(b) && (b[skip] == '\r' || b[skip] == '\n') {
		skip++
	}
	i := max(from, skip)
	for {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1, 0, skip
		}
		nl := i + j
		// The next line is empty: "\n\n" or "\n\r\n".
		if nl+1 < len(b) && b[nl+1] == '\n' {
			return nl - skip, nl + 2, skip
		}
		if nl+2 < len(b) && b[nl+1] == '\r' && b[nl+2] == '\n' {
			return nl - skip, nl + 3, skip
		}
		if nl+2 >= len(b) {
			return -1, 0, skip // the next line is not all here yet
		}
		i = nl + 1
	}
}

// hostPort splits a Host header value into the lower-case host name (as
// libhtp normalizes it) and its port (0: none).
func hostPort(v string) (string, int) {
	host, port := v, ""
	if len(v) > 0 && v[0] == '[' {
		if i := indexByte(v, ']'); i > 0 {
			host = v[:i+1] // libhtp keeps the brackets
			if len(v) > i+1 && v[i+1] == ':' {
				port = v[i+2:]
			}
		}
	} else if i := lastIndexByte(v, ':'); i >= 0 {
		host, port = v[:i], v[i+1:]
	}
	p := 0
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n <= 0 || n > 65535 {
			return lower(v), 0
		}
		p = n
	}
	return lower(host), p
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func lastIndexByte(s string, c byte) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// parseChunkSize reads a chunk-size line ("1a;ext=x"): the size, or false.
func parseChunkSize(line []byte) (int64, bool) {
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	line = bytes.Trim(line, " \t")
	if len(line) == 0 || len(line) > 15 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(line), 16, 64)
	return n, err == nil && n >= 0
}

// uriAuthority returns the host[:port] of an absolute URI
// ("http://host:port/path") or of CONNECT's authority-form target, or "".
func uriAuthority(uri string, connect bool) string {
	if connect {
		return uri
	}
	i := indexByte(uri, ':')
	if i <= 0 || len(uri) < i+3 || uri[i+1] != '/' || uri[i+2] != '/' {
		return ""
	}
	for _, c := range uri[:i] {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.') {
			return ""
		}
	}
	a := uri[i+3:]
	for j := 0; j < len(a); j++ {
		if a[j] == '/' || a[j] == '?' || a[j] == '#' {
			a = a[:j]
			break
		}
	}
	if k := lastIndexByte(a, '@'); k >= 0 {
		a = a[k+1:]
	}
	return a
}

// Common values are shared strings: a transaction's event then allocates
// only what varies (URL, host, user agent, ...).
var (
	methods  = []string{"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "CONNECT", "PATCH"}
	versions = []string{"HTTP/1.1", "HTTP/1.0"}
)

func intern(b []byte, common []string) string {
	for _, s := range common {
		if string(b) == s {
			return s
		}
	}
	return string(b)
}
