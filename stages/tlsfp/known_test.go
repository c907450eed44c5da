package tlsfp

import (
	"slices"
	"testing"
)

// TestClientRecallsOnlyTheSameHello: a Scratch that remembers hellos gives
// exactly the fingerprints a fresh computation gives, for hellos that
// differ in one input each, met in turn so that each finds the others
// remembered.
func TestClientRecallsOnlyTheSameHello(t *testing.T) {
	ch, _ := helloBodies(t)
	parse := func() *ClientHello {
		h := new(ClientHello)
		if err := h.Parse(ch); err != nil {
			t.Fatal(err)
		}
		return h
	}
	variants := map[string]func(h *ClientHello){
		"as sent":          func(*ClientHello) {},
		"ciphers reversed": func(h *ClientHello) { slices.Reverse(h.Ciphers) },
		"one cipher less":  func(h *ClientHello) { h.Ciphers = h.Ciphers[1:] },
		"exts reversed":    func(h *ClientHello) { slices.Reverse(h.Extensions) },
		"no SNI ext": func(h *ClientHello) {
			h.Extensions = slices.DeleteFunc(h.Extensions, func(e Extension) bool { return e.Type == extServerName })
		},
		"version":       func(h *ClientHello) { h.Version = 0x0301 },
		"sigalgs":       func(h *ClientHello) { h.SigAlgs = append(h.SigAlgs, 0x0401) },
		"groups":        func(h *ClientHello) { h.Groups = append(h.Groups, 0x0017) },
		"point formats": func(h *ClientHello) { h.PointFormats = append(h.PointFormats, 1) },
		"supported":     func(h *ClientHello) { h.SupportedVersions = []uint16{0x0303} },
		"alpn h3":       func(h *ClientHello) { h.alpn = []byte("\x02h3") },
		"alpn http/1.1": func(h *ClientHello) { h.alpn = []byte("\x08http/1.1") },
		// A list boundary moved: the same values, another split.
		"cipher to sigalgs": func(h *ClientHello) {
			h.SigAlgs = append([]uint16{h.Ciphers[len(h.Ciphers)-1]}, h.SigAlgs...)
			h.Ciphers = h.Ciphers[:len(h.Ciphers)-1]
		},
	}
	names := make([]string, 0, len(variants))
	for n := range variants {
		names = append(names, n)
	}
	slices.Sort(names)
	want := map[string]ClientFingerprints{}
	for _, n := range names {
		h := parse()
		variants[n](h)
		want[n] = new(Scratch).client(h)
	}
	for _, n := range names[1:] {
		if want[n] == want[names[0]] {
			t.Fatalf("variant %q has %q's fingerprints: the test would not see a stale recall", n, names[0])
		}
	}
	var warm Scratch
	for round := range 3 {
		for _, n := range names {
			h := parse()
			variants[n](h)
			if got := warm.Client(h); got != want[n] {
				t.Fatalf("round %d, %s: got %+v, want %+v", round, n, got, want[n])
			}
			var q Scratch
			if got, fresh := warm.ClientQUIC(h), q.ClientQUIC(h); got != fresh || got.JA4 == want[n].JA4 {
				t.Fatalf("round %d, %s over QUIC: got %+v, want %+v (not %q)", round, n, got, fresh, want[n].JA4)
			}
		}
	}
}

// TestServerRecallsOnlyTheSameHello is TestClientRecallsOnlyTheSameHello
// for ServerHellos (JA3S).
func TestServerRecallsOnlyTheSameHello(t *testing.T) {
	_, sh := helloBodies(t)
	parse := func() *ServerHello {
		h := new(ServerHello)
		if err := h.Parse(sh); err != nil {
			t.Fatal(err)
		}
		return h
	}
	if len(parse().Extensions) < 2 {
		t.Fatal("the test hello needs two extensions")
	}
	variants := []func(h *ServerHello){
		func(*ServerHello) {},
		func(h *ServerHello) { h.Version = 0x0301 },
		func(h *ServerHello) { h.Cipher ^= 0x0101 },
		func(h *ServerHello) { slices.Reverse(h.Extensions) },
		func(h *ServerHello) { h.Extensions = h.Extensions[1:] },
		func(h *ServerHello) { h.Extensions = append(h.Extensions, Extension{Type: 0xff01}) },
	}
	want := make([]ServerFingerprints, len(variants))
	for i, v := range variants {
		h := parse()
		v(h)
		want[i] = new(Scratch).server(h)
		for j := range i {
			if want[j] == want[i] {
				t.Fatalf("variants %d and %d have the same fingerprints", j, i)
			}
		}
	}
	var warm Scratch
	for round := range 3 {
		for i, v := range variants {
			h := parse()
			v(h)
			if got := warm.Server(h); got != want[i] {
				t.Fatalf("round %d, variant %d: got %+v, want %+v", round, i, got, want[i])
			}
		}
	}
}

// TestClientRecallIgnoresGREASE: hellos that differ only in their GREASE
// values (drawn anew for each connection) have the same fingerprints,
// and the second is recalled without an allocation.
func TestClientRecallIgnoresGREASE(t *testing.T) {
	ch, _ := helloBodies(t)
	withGREASE := func(g uint16) *ClientHello {
		h := new(ClientHello)
		if err := h.Parse(ch); err != nil {
			t.Fatal(err)
		}
		h.Ciphers = append([]uint16{g}, h.Ciphers...)
		h.Extensions = append([]Extension{{Type: g}}, h.Extensions...)
		h.SupportedVersions = append([]uint16{g}, h.SupportedVersions...)
		h.Groups = append([]uint16{g}, h.Groups...)
		h.SigAlgs = append(h.SigAlgs, g)
		return h
	}
	a, b := withGREASE(0x0a0a), withGREASE(0xdada)
	want := new(Scratch).client(a)
	if got := new(Scratch).client(b); got != want {
		t.Fatalf("GREASE changed the fingerprints: %+v, %+v", got, want)
	}
	var warm Scratch
	if got := warm.Client(a); got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if n := testing.AllocsPerRun(10, func() {
		if got := warm.Client(b); got != want {
			t.Fatalf("recalled %+v, want %+v", got, want)
		}
	}); n != 0 {
		t.Fatalf("%.1f allocations: the hello with other GREASE values was not recalled", n)
	}
}
