package afpacket_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	gpafpacket "github.com/gopacket/gopacket/afpacket"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/sources/afpacket"
	"github.com/pktpipe/pktpipe/sources/afpacket/netnstest"
)

// floodCount returns the datagram count for flood tests, skipping unless
// PKTPIPE_FLOOD=1 (they take tens of seconds and load the machine).
func floodCount(t *testing.T) int {
	if os.Getenv("PKTPIPE_FLOOD") != "1" {
		t.Skip("flood test: set PKTPIPE_FLOOD=1 (PKTPIPE_FLOOD_COUNT, default 2000000)")
	}
	n := 2_000_000
	if v, err := strconv.Atoi(os.Getenv("PKTPIPE_FLOOD_COUNT")); err == nil && v > 0 {
		n = v
	}
	return n
}

// TestFlood blasts 64-byte frames through the veth pair and reports what
// the AF_PACKET source captured with fanout 1 and 2, and, for comparison,
// a reader on gopacket/afpacket with the same ring.
func TestFlood(t *testing.T) {
	count := floodCount(t)
	np := netnstest.New(t)
	for _, fan := range []int{1, 2} {
		t.Run(fmt.Sprintf("fanout%d", fan), func(t *testing.T) {
			reg := stats.NewRegistry()
			srcs, err := afpacket.NewGroup(afpacket.Config{Interface: np.Dev[1], Netns: np.Path(1), Fanout: fan, Stats: reg})
			if err != nil {
				t.Fatal(err)
			}
			res := netnstest.RunFlood(t, np, count, toSources(srcs)...)
			var drops, freezes float64
			for _, s := range reg.Snapshot() {
				switch s.Name {
				case "pktpipe_afpacket_drops_total":
					drops += s.Value
				case "pktpipe_afpacket_freezes_total":
					freezes += s.Value
				}
			}
			t.Logf("afpacket fanout %d: %v; ring drops %.0f, freezes %.0f", fan, res, drops, freezes)
		})
	}
	t.Run("gopacket", func(t *testing.T) {
		var tp *gpafpacket.TPacket
		err := netnstest.InNetns(np.Path(1), func() (err error) {
			tp, err = gpafpacket.NewTPacket(gpafpacket.OptInterface(np.Dev[1]), gpafpacket.TPacketVersion3,
				gpafpacket.OptBlockSize(1<<20), gpafpacket.OptNumBlocks(8), gpafpacket.OptFrameSize(2048),
				gpafpacket.OptBlockTimeout(64*time.Millisecond), gpafpacket.OptPollTimeout(100*time.Millisecond))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		src := &gopacketSource{tp: tp}
		res := netnstest.RunFlood(t, np, count, src)
		t.Logf("gopacket/afpacket: %v; ring drops %d", res, src.drops)
	})
}

func toSources(srcs []*afpacket.Source) []pipeline.Source {
	out := make([]pipeline.Source, len(srcs))
	for i, s := range srcs {
		out[i] = s
	}
	return out
}

// gopacketSource reads with gopacket's ZeroCopyReadPacketData and copies
// into batches, as a Source built on it would.
type gopacketSource struct {
	tp    *gpafpacket.TPacket
	drops uint
	once  sync.Once
}

func (g *gopacketSource) Name() string { return "gopacket" }

// Close releases the ring (tp.Close is not safe to call twice).
func (g *gopacketSource) Close() error {
	g.once.Do(g.tp.Close)
	return nil
}

func (g *gopacketSource) Run(ctx context.Context, pool *packet.Pool, out chan<- *packet.Batch) error {
	defer func() {
		if _, st, err := g.tp.SocketStats(); err == nil {
			g.drops = st.Drops()
		}
	}()
	var b *packet.Batch
	for ctx.Err() == nil {
		data, ci, err := g.tp.ZeroCopyReadPacketData()
		if err != nil {
			if errors.Is(err, gpafpacket.ErrTimeout) {
				if b != nil {
					out <- b
					b = nil
				}
				continue
			}
			return err
		}
		if b != nil && b.Full(len(data)) {
			out <- b
			b = nil
		}
		if b == nil {
			b = pool.Get()
		}
		p := b.Append(data)
		p.OrigLen = uint32(ci.Length)
		p.Timestamp = ci.Timestamp.UnixNano()
		p.IfIndex = int32(ci.InterfaceIndex)
	}
	if b != nil {
		out <- b
	}
	return nil
}
