package gen

import (
	"crypto/md5"
	"encoding/hex"
	"math/rand/v2"
	"strconv"
	"strings"

	"golang.org/x/crypto/cryptobyte"
)

// TLS constants used by the generated hellos.
const (
	extServerName     = 0x0000
	extStatusRequest  = 0x0005
	extGroups         = 0x000a
	extPointFormats   = 0x000b
	extSigAlgs        = 0x000d
	extALPN           = 0x0010
	extSCT            = 0x0012
	extEMS            = 0x0017
	extCompressCert   = 0x001b
	extSessionTicket  = 0x0023
	extSupportedVers  = 0x002b
	extPSKModes       = 0x002d
	extKeyShare       = 0x0033
	extRenegotiation  = 0xff01
	groupX25519       = 0x001d
	groupP256         = 0x0017
	groupP384         = 0x0018
	groupX25519MLKEM  = 0x11ec
	mlkemClientShare  = 1216 // X25519MLKEM768: ML-KEM-768 encapsulation key + X25519 share
	mlkemServerShare  = 1120 // ML-KEM-768 ciphertext + X25519 share
	recordHandshake   = 0x16
	recordCCS         = 0x14
	recordAppData     = 0x17
	maxRecordPlaintxt = 16384
)

// helloProfile is a family of client stacks.
type helloProfile uint8

const (
	profileChrome  helloProfile = iota // TLS 1.3, GREASE, shuffled extensions
	profileFirefox                     // TLS 1.3, no GREASE, fixed order
	profileLegacy                      // TLS 1.2 only (no supported_versions/key_share)
)

var (
	chromeCiphers  = []uint16{0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035}
	firefoxCiphers = []uint16{0x1301, 0x1303, 0x1302, 0xc02b, 0xc02f, 0xcca9, 0xcca8, 0xc02c, 0xc030, 0xc00a, 0xc009, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035}
	legacyCiphers  = []uint16{0xc02f, 0xc030, 0xc02b, 0xc02c, 0x009e, 0xc027, 0x0067, 0xc028, 0x006b, 0x009f, 0xcca9, 0xcca8, 0x009c, 0x009d, 0x003c, 0x003d, 0x002f, 0x0035, 0x00ff}
	sigAlgs        = []uint16{0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601}
)

func grease(r *rand.Rand) uint16 {
	g := uint16(r.IntN(16))
	return g<<12 | 0x0a<<8 | g<<4 | 0x0a
}

func isGrease(v uint16) bool { return v&0x0f0f == 0x0a0a && v>>8 == v&0xff }

// helloSpec is what a ClientHello offers; the generator's ground truth.
type helloSpec struct {
	profile  helloProfile
	sni      string
	alpn     []string
	mlkem    bool // offer an X25519MLKEM768 key share (hello spans two segments)
	ciphers  []uint16
	exts     []uint16 // in wire order, GREASE included
	groups   []uint16
	versions []uint16 // supported_versions, GREASE included
}

type ext struct {
	typ  uint16
	body func(b *cryptobyte.Builder)
}

func u16list(b *cryptobyte.Builder, vs []uint16) {
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, v := range vs {
			b.AddUint16(v)
		}
	})
}

func randBytes(r *rand.Rand, n int) []byte {
	p := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			p[i+j] = byte(v >> (8 * j))
		}
	}
	return p
}

// clientHello builds a ClientHello record for spec, filling in the spec's
// wire lists.
func clientHello(r *rand.Rand, s *helloSpec) []byte {
	useGrease := s.profile == profileChrome
	var g1, g2, g3, g4 uint16
	if useGrease {
		g1, g2, g3, g4 = grease(r), grease(r), grease(r), grease(r)
		for g4 == g1 { // Chrome never repeats the first GREASE extension
			g4 = grease(r)
		}
	}
	switch s.profile {
	case profileChrome:
		s.ciphers = append([]uint16{g2}, chromeCiphers...)
	case profileFirefox:
		s.ciphers = firefoxCiphers
	default:
		s.ciphers = legacyCiphers
	}
	s.groups = nil
	if useGrease {
		s.groups = append(s.groups, g3)
	}
	if s.mlkem {
		s.groups = append(s.groups, groupX25519MLKEM)
	}
	s.groups = append(s.groups, groupX25519, groupP256, groupP384)
	if s.profile != profileLegacy {
		if useGrease {
			s.versions = []uint16{grease(r), 0x0304, 0x0303}
		} else {
			s.versions = []uint16{0x0304, 0x0303}
		}
	}

	var exts []ext
	if s.sni != "" {
		exts = append(exts, ext{extServerName, func(b *cryptobyte.Builder) {
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				b.AddUint8(0) // host_name
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(s.sni)) })
			})
		}})
	}
	exts = append(exts,
		ext{extEMS, nil},
		ext{extRenegotiation, func(b *cryptobyte.Builder) { b.AddUint8(0) }},
		ext{extGroups, func(b *cryptobyte.Builder) { u16list(b, s.groups) }},
		ext{extPointFormats, func(b *cryptobyte.Builder) { b.AddUint8(1); b.AddUint8(0) }},
		ext{extSessionTicket, nil},
	)
	if len(s.alpn) > 0 {
		exts = append(exts, ext{extALPN, func(b *cryptobyte.Builder) {
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				for _, p := range s.alpn {
					b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(p)) })
				}
			})
		}})
	}
	exts = append(exts,
		ext{extStatusRequest, func(b *cryptobyte.Builder) { b.AddBytes([]byte{1, 0, 0, 0, 0}) }},
		ext{extSigAlgs, func(b *cryptobyte.Builder) { u16list(b, sigAlgs) }},
	)
	if s.profile != profileLegacy {
		x25519 := randBytes(r, 32)
		var kem []byte
		if s.mlkem {
			kem = randBytes(r, mlkemClientShare)
		}
		exts = append(exts,
			ext{extSCT, nil},
			ext{extKeyShare, func(b *cryptobyte.Builder) {
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
					if useGrease {
						b.AddUint16(g3)
						b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint8(0) })
					}
					if s.mlkem {
						b.AddUint16(groupX25519MLKEM)
						b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(kem) })
					}
					b.AddUint16(groupX25519)
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(x25519) })
				})
			}},
			ext{extPSKModes, func(b *cryptobyte.Builder) { b.AddUint8(1); b.AddUint8(1) }},
			ext{extSupportedVers, func(b *cryptobyte.Builder) {
				b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) {
					for _, v := range s.versions {
						b.AddUint16(v)
					}
				})
			}},
			ext{extCompressCert, func(b *cryptobyte.Builder) { b.AddBytes([]byte{2, 0, 2}) }},
		)
	}
	if useGrease {
		// Chrome permutes its extensions and brackets them with GREASE.
		r.Shuffle(len(exts), func(i, j int) { exts[i], exts[j] = exts[j], exts[i] })
		exts = append([]ext{{g1, nil}}, exts...)
		exts = append(exts, ext{g4, func(b *cryptobyte.Builder) { b.AddUint8(0) }})
	}
	s.exts = s.exts[:0]
	for _, e := range exts {
		s.exts = append(s.exts, e.typ)
	}

	random, sid := randBytes(r, 32), randBytes(r, 32)
	b := cryptobyte.NewBuilder(make([]byte, 0, 2048))
	b.AddUint8(recordHandshake)
	b.AddUint16(0x0301)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint8(1) // client_hello
		b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
			b.AddUint16(0x0303)
			b.AddBytes(random)
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(sid) })
			u16list(b, s.ciphers)
			b.AddUint8(1)
			b.AddUint8(0) // null compression
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				for _, e := range exts {
					b.AddUint16(e.typ)
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
						if e.body != nil {
							e.body(b)
						}
					})
				}
			})
		})
	})
	return b.BytesOrPanic()
}

// serverChoice is what the server picked.
type serverChoice struct {
	version uint16 // 0x0304 or 0x0303
	cipher  uint16
	alpn    string // only visible in TLS 1.2 (1.3 sends it encrypted)
	group   uint16
}

// choose picks the server's answer to spec, as a real server would: TLS 1.3
// when offered, its first cipher of the right kind, the first ALPN.
func choose(s *helloSpec) serverChoice {
	c := serverChoice{version: 0x0303, cipher: 0xc02f}
	if len(s.versions) > 0 {
		c.version, c.cipher, c.group = 0x0304, 0x1301, groupX25519
		if s.mlkem {
			c.group = groupX25519MLKEM
		}
	}
	if len(s.alpn) > 0 {
		c.alpn = s.alpn[0]
	}
	return c
}

// serverFlight builds the server's first flight: ServerHello, then for
// TLS 1.3 a ChangeCipherSpec and the encrypted rest of the handshake, for
// TLS 1.2 ServerHelloDone (no certificate: the generator does not make
// keys).
func serverFlight(r *rand.Rand, s *helloSpec, c serverChoice, encLen int) []byte {
	b := cryptobyte.NewBuilder(make([]byte, 0, 4096))
	b.AddUint8(recordHandshake)
	b.AddUint16(0x0303)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint8(2) // server_hello
		b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
			b.AddUint16(0x0303)
			b.AddBytes(randBytes(r, 32))
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(randBytes(r, 32)) })
			b.AddUint16(c.cipher)
			b.AddUint8(0)
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				if c.version == 0x0304 {
					b.AddUint16(extSupportedVers)
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint16(0x0304) })
					n := 32
					if c.group == groupX25519MLKEM {
						n = mlkemServerShare
					}
					b.AddUint16(extKeyShare)
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
						b.AddUint16(c.group)
						b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(randBytes(r, n)) })
					})
					return
				}
				b.AddUint16(extRenegotiation)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint8(0) })
				b.AddUint16(extPointFormats)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint8(1); b.AddUint8(0) })
				b.AddUint16(extEMS)
				b.AddUint16(0)
				if c.alpn != "" {
					b.AddUint16(extALPN)
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
						b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
							b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(c.alpn)) })
						})
					})
				}
			})
		})
		if c.version == 0x0303 {
			b.AddBytes([]byte{14, 0, 0, 0}) // server_hello_done
		}
	})
	if c.version == 0x0304 {
		b.AddBytes([]byte{recordCCS, 3, 3, 0, 1, 1})
		addAppData(b, r, encLen)
	}
	return b.BytesOrPanic()
}

// clientFinish is the client's second flight.
func clientFinish(r *rand.Rand, c serverChoice) []byte {
	b := cryptobyte.NewBuilder(make([]byte, 0, 256))
	if c.version == 0x0303 {
		b.AddUint8(recordHandshake)
		b.AddUint16(0x0303)
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			b.AddUint8(16) // client_key_exchange
			b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
				b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(randBytes(r, 32)) })
			})
		})
		b.AddBytes([]byte{recordCCS, 3, 3, 0, 1, 1})
		b.AddUint8(recordHandshake) // encrypted Finished
		b.AddUint16(0x0303)
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(randBytes(r, 40)) })
		return b.BytesOrPanic()
	}
	b.AddBytes([]byte{recordCCS, 3, 3, 0, 1, 1})
	addAppData(b, r, 53)
	return b.BytesOrPanic()
}

// serverFinish is a TLS 1.2 server's ChangeCipherSpec and Finished.
func serverFinish(r *rand.Rand) []byte {
	b := cryptobyte.NewBuilder(make([]byte, 0, 64))
	b.AddBytes([]byte{recordCCS, 3, 3, 0, 1, 1})
	b.AddUint8(recordHandshake)
	b.AddUint16(0x0303)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(randBytes(r, 40)) })
	return b.BytesOrPanic()
}

func addAppData(b *cryptobyte.Builder, r *rand.Rand, n int) {
	b.AddUint8(recordAppData)
	b.AddUint16(0x0303)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(randBytes(r, n)) })
}

// ja3 returns the JA3 string of a hello (GREASE removed) and its MD5.
func ja3(s *helloSpec) (string, string) {
	join := func(vs []uint16) string {
		var parts []string
		for _, v := range vs {
			if !isGrease(v) {
				parts = append(parts, strconv.Itoa(int(v)))
			}
		}
		return strings.Join(parts, "-")
	}
	str := "771," + join(s.ciphers) + "," + join(s.exts) + "," + join(s.groups) + ",0"
	h := md5.Sum([]byte(str))
	return str, hex.EncodeToString(h[:])
}
