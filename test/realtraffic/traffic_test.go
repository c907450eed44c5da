package realtraffic

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/internal/testenv"
)

// Ports of the servers in the server namespace.
const (
	portECDSA = 4431 // openssl s_server -www, ECDSA P-256 certificate
	portRSA   = 4432 // openssl s_server -www, RSA-2048 certificate
	portHRR   = 4433 // Go crypto/tls, TLS 1.3 with P-256 only: HelloRetryRequest for X25519-first clients
)

// cert is a self-signed server certificate made by openssl.
type cert struct {
	name, certPEM, keyPEM string
}

// makeCert makes a certificate with the given serial (openssl's syntax,
// e.g. "0x1F2E"): fixed, so that both a serial whose DER integer needs a
// leading 00 and one that does not are met on every run.
func makeCert(t *testing.T, dir, name, serial string, keyArgs ...string) cert {
	t.Helper()
	c := cert{name: name, certPEM: filepath.Join(dir, name+".crt"), keyPEM: filepath.Join(dir, name+".key")}
	args := append([]string{"req", "-x509", "-newkey"}, keyArgs...)
	args = append(args, "-nodes", "-days", "30", "-set_serial", serial,
		"-subj", "/C=XX/O=pktpipe real traffic/OU="+name+"/CN=server.test",
		"-addext", "subjectAltName=DNS:server.test,DNS:*.server.test",
		"-keyout", c.keyPEM, "-out", c.certPEM)
	mustRun(t, append([]string{"openssl"}, args...)...)
	return c
}

// client is one TLS client run: a program, an address family, and the
// server it talks to. Its SNI names it in the capture.
type client struct {
	name string // e.g. "curl-tls13"
	v6   bool
	port int
	// expectations about the handshake itself
	hrr        bool // the server answers with a HelloRetryRequest
	hrrDiffers bool // and the second ClientHello has another JA3 than the first
	split      bool // the (first) ClientHello spans several TCP segments
	certCheck  *cert
	run        func(ctx context.Context, l *lab, c *client, addr string) error
}

func (c *client) family() string {
	if c.v6 {
		return "v6"
	}
	return "v4"
}

func (c *client) sni() string { return c.name + "-" + c.family() + ".server.test" }

func (c *client) label() string { return c.name + "/" + c.family() }

func hostPort(addr string, port int) string { return net.JoinHostPort(addr, fmt.Sprint(port)) }

func curlRun(args ...string) func(context.Context, *lab, *client, string) error {
	return func(ctx context.Context, l *lab, c *client, addr string) error {
		resolve := fmt.Sprintf("%s:%d:%s", c.sni(), c.port, addr)
		if c.v6 {
			resolve = fmt.Sprintf("%s:%d:[%s]", c.sni(), c.port, addr)
		}
		a := append([]string{"curl", "-sS", "-k", "--max-time", "10", "-o", "/dev/null"}, args...)
		a = append(a, "--resolve", resolve, fmt.Sprintf("https://%s:%d/", c.sni(), c.port))
		_, err := l.exec(ctx, 0, "", a...)
		return err
	}
}

func opensslRun(args ...string) func(context.Context, *lab, *client, string) error {
	return func(ctx context.Context, l *lab, c *client, addr string) error {
		a := append([]string{"openssl", "s_client", "-connect", hostPort(addr, c.port), "-servername", c.sni(), "-ign_eof"}, args...)
		out, err := l.exec(ctx, 0, "GET / HTTP/1.0\r\n\r\n", a...)
		if err == nil && !strings.Contains(out, "Cipher is") {
			err = fmt.Errorf("openssl s_client: no handshake:\n%s", out)
		}
		return err
	}
}

const pythonClient = `
import socket, ssl, sys
host, port, sni, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["h2", "http/1.1"])
with socket.create_connection((host, port), timeout=10) as s:
    with ctx.wrap_socket(s, server_hostname=sni) as t:
        t.sendall(b"GET / HTTP/1.0\r\nHost: " + sni.encode() + b"\r\n\r\n")
        while t.recv(4096):
            pass
`

// goClient is a Go crypto/tls client with the default configuration (only
// the server name and the CA to trust are set): Go 1.26 offers
// X25519MLKEM768, so its ClientHello is about 1.8 KB, two segments at MTU 1500.
func goClient(ca *x509.CertPool) func(context.Context, *lab, *client, string) error {
	return func(ctx context.Context, l *lab, c *client, addr string) error {
		conn, err := l.dialTCP(cli, hostPort(addr, c.port))
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Client(conn, &tls.Config{ServerName: c.sni(), RootCAs: ca})
		if err := tc.HandshakeContext(ctx); err != nil {
			return err
		}
		if _, err := io.WriteString(tc, "GET / HTTP/1.0\r\n\r\n"); err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, tc)
		return err
	}
}

// serveGoTLS is the HelloRetryRequest server: TLS 1.3 only, P-256 only.
func serveGoTLS(t *testing.T, ln net.Listener, c cert) {
	kp, err := tls.LoadX509KeyPair(c.certPEM, c.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{
		Certificates:     []tls.Certificate{kp},
		MinVersion:       tls.VersionTLS13,
		CurvePreferences: []tls.CurveID{tls.CurveP256},
		NextProtos:       []string{"http/1.1"},
	}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				tc := tls.Server(conn, cfg)
				if tc.Handshake() != nil {
					return
				}
				buf := make([]byte, 4096)
				var req []byte
				for !bytes.Contains(req, []byte("\r\n\r\n")) {
					n, err := tc.Read(buf)
					req = append(req, buf[:n]...)
					if err != nil {
						return
					}
				}
				_, _ = io.WriteString(tc, "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
				_ = tc.Close()
			}()
		}
	}()
}

// serveDNS answers every A query with the server's address (and other
// types with no answer), like testdata/make-sample.sh's responder.
func serveDNS(pc net.PacketConn, a net.IP) {
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := buf[:n]
			if len(q) < 17 {
				continue
			}
			end := bytes.IndexByte(q[12:], 0)
			if end < 0 || 12+end+5 > len(q) {
				continue
			}
			question := q[12 : 12+end+5]
			qtype := binary.BigEndian.Uint16(question[len(question)-4:])
			resp := binary.BigEndian.AppendUint16(nil, binary.BigEndian.Uint16(q))
			resp = binary.BigEndian.AppendUint16(resp, 0x8180)
			ancount := uint16(0)
			if qtype == 1 {
				ancount = 1
			}
			resp = append(resp, 0, 1, byte(ancount>>8), byte(ancount), 0, 0, 0, 0)
			resp = append(resp, question...)
			if qtype == 1 {
				resp = append(resp, 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4)
				resp = append(resp, a.To4()...)
			}
			_, _ = pc.WriteTo(resp, from)
		}
	}()
}

// traffic is what ran in the lab and where it was captured.
type traffic struct {
	pcap    string
	clients []*client
	certs   map[string]cert
}

// makeTraffic builds the lab, starts the servers and the capture, runs
// every client over IPv4 and IPv6 (a few at a time), plus ping and dig,
// and returns the finished capture.
func makeTraffic(t *testing.T) *traffic {
	for _, c := range []string{"openssl", "curl", "python3", "ping", "dig", "tcpdump"} {
		testenv.NeedCommand(t, c)
	}
	l := newLab(t)
	dir := t.TempDir()
	ec := makeCert(t, dir, "ecdsa", "0x1F2E3D4C5B6A798812", "ec", "-pkeyopt", "ec_paramgen_curve:P-256")
	rsa := makeCert(t, dir, "rsa", "0x848FDC6F7AF5EC54E6A86E5A4E893AB9928C67", "rsa:2048") // DER: 00:84:8F:...
	caPEM, err := os.ReadFile(ec.certPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)

	// Servers.
	for _, s := range []struct {
		c    cert
		port int
	}{{ec, portECDSA}, {rsa, portRSA}} {
		// One per family: s_server's [::] socket is IPv6-only.
		for _, a := range []string{l.v4[srv], l.v6[srv]} {
			l.start(srv, "ACCEPT", "openssl", "s_server", "-accept", hostPort(a, s.port),
				"-cert", s.c.certPEM, "-key", s.c.keyPEM, "-www")
		}
	}
	serveGoTLS(t, l.listenTCP(srv, portHRR), ec)
	serveDNS(l.listenUDP(srv, 53), net.ParseIP(l.v4[srv]))

	var clients []*client
	for _, v6 := range []bool{false, true} {
		clients = append(clients,
			&client{name: "curl-tls12", v6: v6, port: portECDSA, certCheck: &ec,
				run: curlRun("--tlsv1.2", "--tls-max", "1.2")},
			&client{name: "curl-tls13", v6: v6, port: portECDSA, run: curlRun("--tlsv1.3")},
			&client{name: "openssl-tls12", v6: v6, port: portRSA, certCheck: &rsa,
				run: opensslRun("-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256", "-alpn", "h2,http/1.1")},
			&client{name: "openssl-tls13", v6: v6, port: portECDSA,
				run: opensslRun("-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256", "-groups", "X25519:P-256", "-alpn", "h2,http/1.1")},
			&client{name: "openssl-hrr", v6: v6, port: portHRR, hrr: true,
				run: opensslRun("-tls1_3", "-groups", "X25519:P-256", "-alpn", "http/1.1")},
			// OpenSSL pads a hello of 256-511 bytes to 512 (RFC 7685, on with
			// -bugs): with this ALPN filler the first hello (X25519 share) is
			// padded, the second (P-256 share, 33 bytes longer) is not, so the
			// two hellos of the HelloRetryRequest flow have different JA3 and JA4.
			&client{name: "openssl-hrr-pad", v6: v6, port: portHRR, hrr: true, hrrDiffers: true,
				run: opensslRun("-bugs", "-tls1_3", "-groups", "X25519:P-256", "-alpn", "http/1.1,"+strings.Repeat("x", 240))},
			&client{name: "curl-hrr", v6: v6, port: portHRR, hrr: true, run: curlRun("--tlsv1.3")},
			&client{name: "go-default", v6: v6, port: portECDSA, split: true, run: goClient(pool)},
			&client{name: "go-hrr", v6: v6, port: portHRR, split: true, hrr: true, run: goClient(pool)},
			&client{name: "python", v6: v6, port: portECDSA,
				run: func(ctx context.Context, l *lab, c *client, addr string) error {
					_, err := l.exec(ctx, cli, "", "python3", "-c", pythonClient, addr, fmt.Sprint(c.port), c.sni(), ec.certPEM)
					return err
				}},
		)
	}

	pcap := filepath.Join(dir, "realtraffic.pcap")
	capt := l.startCapture(pcap)

	ctx := context.Background()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, 4)
	)
	do := func(what string, fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := fn(); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", what, err))
				mu.Unlock()
			}
		}()
	}
	do("ping v4", func() error {
		_, err := l.exec(ctx, cli, "", "ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", l.v4[srv])
		return err
	})
	do("ping v6", func() error {
		_, err := l.exec(ctx, cli, "", "ping", "-6", "-n", "-c", "3", "-i", "0.2", "-W", "2", l.v6[srv])
		return err
	})
	for _, a := range []string{l.v4[srv], l.v6[srv]} {
		do("dig @"+a, func() error {
			out, err := l.exec(ctx, cli, "", "dig", "+tries=1", "+time=3", "@"+a, "server.test", "A")
			if err == nil && !strings.Contains(out, "status: NOERROR") {
				err = errors.New("dig: no answer:\n" + out)
			}
			return err
		})
	}
	for _, c := range clients {
		addr := l.v4[srv]
		if c.v6 {
			addr = l.v6[srv]
		}
		do(c.label(), func() error { return c.run(ctx, l, c, addr) })
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatal(errors.Join(errs...))
	}
	capt.stop()
	if keep := os.Getenv("REALTRAFFIC_KEEP"); keep != "" {
		b, _ := os.ReadFile(pcap)
		_ = os.WriteFile(keep, b, 0o644)
	}
	return &traffic{pcap: pcap, clients: clients, certs: map[string]cert{"ecdsa": ec, "rsa": rsa}}
}
