package packet

import "testing"

// TestAppendPacketKeepsIndex: a packet copied into another batch (as the
// dispatcher does) keeps its source Index and metadata; Append starts a
// fresh packet with none.
func TestAppendPacketKeepsIndex(t *testing.T) {
	pool := NewPool(4, 1024)
	src := pool.Get()
	p := src.Append([]byte{1, 2, 3})
	if p.Index != 0 || p.IfIndex != -1 {
		t.Fatalf("Append: Index %d IfIndex %d, want 0 and -1", p.Index, p.IfIndex)
	}
	p.Index, p.Timestamp, p.OrigLen, p.Meta.Proto = 42, 7, 60, ProtoUDP
	dst := pool.Get()
	q := dst.AppendPacket(p)
	if q.Index != 42 || q.Timestamp != 7 || q.OrigLen != 60 || q.Meta.Proto != ProtoUDP {
		t.Errorf("AppendPacket lost fields: %+v", *q)
	}
	if &q.Data[0] == &p.Data[0] || string(q.Data) != string(p.Data) {
		t.Error("AppendPacket did not copy the bytes into its own arena")
	}
	src.Release()
	dst.Release()
	if r := pool.Get().Append(nil); r.Index != 0 {
		t.Errorf("reused batch: Append gives Index %d", r.Index)
	}
}
