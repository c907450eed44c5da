package quic

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/stages/decode"
)

// mayHoldQUIC reports whether a capture has a UDP datagram that starts
// like a QUIC long header of a released or draft version: the oracle
// test's pre-filter, independent of the tracker, so that tshark runs on
// a handful of files instead of every capture.
func mayHoldQUIC(t *testing.T, path string) bool {
	src, linkType, err := readCapture(path)
	if err != nil {
		// gopacket reads no pcap 2.1 (two NFS captures of suricata-verify):
		// such a file cannot be dissected here, QUIC or not.
		t.Logf("%s: %v", path, err)
		return false
	}
	dec := decode.New()
	for {
		data, ci, err := src.ReadPacketData()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || err != nil {
			return false
		}
		pk := packet.Packet{Data: data, LinkType: linkType(ci), IfIndex: -1}
		dec.Decode(&pk)
		if pk.Meta.Proto != packet.ProtoUDP {
			continue
		}
		b := pk.Payload()
		if len(b) < 7 || b[0]&0x80 == 0 {
			continue
		}
		v := binary.BigEndian.Uint32(b[1:5])
		if v == Version1 || v == Version2 || v>>8 == 0xff0000 || v == 0x709a50c4 {
			return true
		}
	}
}

// TestTsharkOracle: for every capture of the conformance data that holds
// QUIC, tshark's dissection of the client Initials (udp.stream, version,
// SNI) agrees with the quic events: every stream where tshark reads an
// SNI has a client hello event with that SNI and QUIC version, and every
// client hello event is such a stream.
func TestTsharkOracle(t *testing.T) {
	tshark := testenv.NeedCommand(t, "tshark")
	root := testenv.Conformance(t)
	var files []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		n := d.Name()
		if !d.IsDir() && (strings.HasSuffix(n, ".pcap") || strings.HasSuffix(n, ".pcapng")) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var quicFiles []string
	for _, f := range files {
		if mayHoldQUIC(t, f) {
			quicFiles = append(quicFiles, f)
		}
	}
	if len(quicFiles) < 12 {
		t.Fatalf("only %d captures with QUIC among %d", len(quicFiles), len(files))
	}
	compared := 0
	for _, f := range quicFiles {
		rel, _ := filepath.Rel(root, f)
		t.Run(rel, func(t *testing.T) {
			out, err := exec.Command(tshark, "-r", f, "-Y", "quic.long.packet_type==0", "-T", "fields",
				"-e", "udp.stream", "-e", "quic.version", "-e", "tls.handshake.extensions_server_name",
				"-e", "ip.src", "-e", "ipv6.src", "-e", "udp.srcport", "-e", "ip.dst", "-e", "ipv6.dst", "-e", "udp.dstport").Output()
			if err != nil {
				t.Fatalf("tshark: %v", err)
			}
			type stream struct {
				tu      tuple
				version string
				sni     string
			}
			streams := map[string]*stream{}
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				f := strings.Split(line, "\t")
				if len(f) < 9 || f[0] == "" {
					continue
				}
				src := firstOf(f[3], f[4])
				dst := firstOf(f[6], f[7])
				s := streams[f[0]]
				if s == nil {
					// The first Initial of a stream is the client's.
					s = &stream{tu: tuple{mustAddrPort(t, src, f[5]), mustAddrPort(t, dst, f[8])}}
					streams[f[0]] = s
					v, err := strconv.ParseUint(strings.TrimPrefix(strings.Split(f[1], ",")[0], "0x"), 16, 32)
					if err != nil {
						t.Fatalf("version %q", f[1])
					}
					s.version = VersionString(uint32(v))
				}
				if f[2] != "" && s.sni == "" {
					s.sni = strings.Split(f[2], ",")[0]
				}
			}
			res := runCapture(t, f)
			got := map[tuple]quicEvent{}
			for _, e := range res.clientEvents() {
				got[eventTuple(e)] = e
			}
			for id, s := range streams {
				if s.sni == "" {
					continue // tshark read no ClientHello with an SNI here
				}
				compared++
				e, ok := got[s.tu]
				switch {
				case !ok:
					t.Errorf("udp.stream %s %s: no quic event; tshark: version %s sni %q", id, s.tu, s.version, s.sni)
				case e.SNI != s.sni || e.Version != s.version:
					t.Errorf("udp.stream %s %s: version %s sni %q; tshark: %s %q", id, s.tu, e.Version, e.SNI, s.version, s.sni)
				}
				delete(got, s.tu)
			}
			for tu, e := range got {
				if e.SNI != "" {
					t.Errorf("%s: quic event with sni %q that tshark does not show", tu, e.SNI)
				}
			}
		})
	}
	t.Logf("%d captures with QUIC, %d streams compared with tshark", len(quicFiles), compared)
}

func firstOf(a, b string) string {
	if a != "" {
		return strings.Split(a, ",")[0]
	}
	return strings.Split(b, ",")[0]
}
