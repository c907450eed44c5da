// Package tlsfp reassembles the first bytes of each direction of a TCP flow,
// finds the TLS handshake in them and fingerprints it: JA3 and JA3S
// (salesforce definition, as tshark computes them), JA4 with its raw and
// original-order forms (FoxIO, BSD-3; the other JA4+ methods are under a
// non-commercial licence and are deliberately not implemented), SNI, ALPN,
// offered and chosen versions, the cipher and, for TLS ≤ 1.2, the server's
// leaf certificate.
//
// A Tracker holds one flow. Feed it every TCP segment of the flow with
// Segment; it buffers each direction in sequence order (retransmissions,
// overlaps and out-of-order segments handled, at most MaxBuffer bytes per
// direction) only until the messages it needs have been parsed, then frees
// the buffers. Segment reports done when nothing more will be learned; call
// Event then (or at flow end, if HasHandshake) to get the tls event.
//
// Inside stages/flow, New wraps this as a flow.Analyzer (registered as
// "tls"): one Tracker per TCP flow (reused from a free list), one tls
// event per flow, emitted when the handshake is read or when the flow
// ends.
//
// The buffers count against the worker's reassembly budget
// (stages/reassembly, Config.Budget), shared with its other analyzers.
// When it is full the buffers that went longest without new data are
// given up: such a direction ends as if it had reached MaxBuffer, and the
// event says truncated.
//
// TLS is recognised by content, on any port: the first record of the
// client's stream must be a handshake record (type 22, version 3.x) holding
// a ClientHello. Anything else ends the tracker without an event.
//
// HelloRetryRequest: the flow gives one tls event. Its fingerprints are
// those of the first ClientHello (as Suricata and FoxIO's reference tool
// report them); the second ClientHello's fingerprints ride along in
// tls.retry. A client that simply repeats its hello without an HRR is
// fingerprinted once (suricata-verify tls-duplicate-hello). The server
// side fingerprints (JA3S, server_handshake) come from the first
// ServerHello, which is the HRR when there is one, again as the references
// do; tls.hello_retry says so.
//
// Event fields beyond EVE: ja4_r/ja4_o/ja4_ro, cipher (IANA name),
// hello_rtt_ms (ClientHello-completing packet to ServerHello-completing
// packet), hello_retry, retry{ja3,ja4...}, truncated. The SANs use EVE's
// name, subjectaltname.
//
// Known divergences, each asserted in the tests: JA4 ends the extension
// string without "_" when there are no signature algorithms (FoxIO's spec
// and code); Suricata 8 adds it (suricata-verify bug-5713-02-ja4). TLS
// preceded by an HTTP CONNECT or SOCKS exchange is not found (the stream
// must start with a TLS record). SSLv2-format hellos are not parsed.
package tlsfp
