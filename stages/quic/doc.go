// Package quic decrypts the Initial packets of QUIC connections (RFC 9000,
// 9001; version 2, RFC 9369; drafts 29-32) to read the TLS hellos they
// carry: the ClientHello gives the SNI, the offered ALPNs and the JA3/JA4
// fingerprints (JA4 with the 'q' transport marker, computed by
// stages/tlsfp), the server's ServerHello the negotiated TLS version and
// cipher.
//
// QUIC is recognised by content on any UDP port: a flow is tracked when
// its first datagram is a long header Initial of a version this package
// decrypts (or one of the reserved 0x?a?a?a?a versions a client sends to
// provoke Version Negotiation). Any other UDP flow is marked once and
// costs one type assertion per packet afterwards.
//
// # Keys
//
// Both directions' Initial keys come from the Destination Connection ID
// of the client's first Initial (HKDF-Extract with the version's salt,
// HKDF-Expand-Label "client in"/"server in", then key, iv and hp; v2 uses
// the "quicv2 ..." labels). They change only when:
//   - the server sent a Retry: the client's next Initial is addressed to
//     the Retry's Source Connection ID, and both sides derive from it;
//   - the client starts over with another version after a Version
//     Negotiation packet;
//   - a client Initial does not authenticate and carries another DCID
//     (the capture missed the first Initial or the Retry): its own DCID
//     is tried once.
//
// A client that has received the server's Initial addresses it with the
// server's SCID but keeps the original keys, so a DCID change alone does
// not re-derive. Derivation allocates the ciphers (at most 4 times per
// connection); decrypting a packet allocates nothing: header protection is
// removed and the payload opened in a per-worker buffer, never in the
// packet's bytes.
//
// # Reassembly
//
// A datagram may hold several coalesced packets; Initials are decrypted,
// Handshake and 0-RTT packets skipped by their Length, and a short header
// or padding ends the datagram. The frames of an Initial are walked
// (PADDING, PING, ACK, CRYPTO, CONNECTION_CLOSE; an unknown type ends the
// packet, keeping what came before) and every CRYPTO frame is placed in
// its direction's stream at its offset: frames may come out of order,
// repeat and overlap across all the Initials of the first flight (a
// post-quantum ClientHello spans two or more). The hello is complete when
// the bytes from offset 0 cover the handshake message's length. The
// buffer is capped at MaxCryptoBytes (64 KiB) per direction, and at 256
// disjoint fragments, and counts against the worker's reassembly budget
// (stages/reassembly, Config.Budget) until the hello is read; the buffer
// then goes back to a per-worker pool.
//
// # Giving up
//
// A connection is abandoned (flow summary state "gave_up") when its
// hello would exceed the cap, the first handshake message is not a hello
// or does not parse, 16 datagrams of a direction came without completing
// its hello, 8 Initials failed to authenticate, the derivation budget
// is spent, or the reassembly budget was full and this connection's
// buffer had gone longest without new data. Version Negotiation packets
// are recorded (versions_offered); Retry packets switch the keys as
// above; garbage never panics (FuzzInitial, FuzzFrames).
//
// # Output
//
// Two quic events per connection, as Suricata logs them: one when the
// ClientHello completes, with EVE's quic fields (version, sni, ja3, ja4,
// extensions with names and the server_name/alpn values) plus ja4_r,
// client_alpns, retry and initials; one when the ServerHello completes,
// with ja3s and its extensions plus tls_version and cipher. Each event's
// timestamp is the packet that completed its hello. EVE's pcap_cnt (that
// packet's index in the capture) is not set: packet.Packet does not carry
// the capture index, so the tests check Suricata's pcap_cnt by feeding
// packets one at a time instead. The flow record gets a "quic" summary
// (event.QUICSummary): version, SNI, JA4, ALPNs, the ServerHello's TLS
// version and cipher, Retry, Version Negotiation, Initial counts and a
// state.
//
// Not done: gQUIC (Q0xx/T05x: EVE's cyu and ua), keys beyond Initial
// (Handshake and 1-RTT need the TLS secrets, so the server's ALPN and
// certificate stay hidden), Retry integrity tags are not verified, and
// ECH (the outer hello is what is fingerprinted).
package quic
