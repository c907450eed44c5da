package tlsfp

import (
	"os"
	"testing"
)

func TestDebugDump(t *testing.T) {
	p := os.Getenv("TLSFP_DUMP")
	if p == "" {
		t.Skip()
	}
	for _, f := range runCapture(t, p) {
		r := f.tr.Result()
		t.Logf("%v done=%v notTLS=%v trunc=%v", f, f.tr.Done(), r.NotTLS, r.Truncated)
		if r.Client != nil {
			t.Logf("  CH sni=%q ja3=%s ja4=%s alpn=%v", r.Client.SNI, r.Client.JA3, r.Client.JA4, r.Client.ALPNs)
		}
		if r.Retry != nil {
			t.Logf("  CH2 ja4=%s", r.Retry.JA4)
		}
		if r.Server != nil {
			t.Logf("  SH hrr=%v ja3s=%s v=%x", r.Server.HRR, r.Server.JA3S, r.Server.Negotiated)
		}
		if r.Cert != nil {
			t.Logf("  cert %+v", *r.Cert)
		}
	}
}
