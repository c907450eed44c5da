// Package all registers every per-flow analyzer: adding one is a new
// package under stages/ plus one import line here.
package all

import (
	_ "github.com/pktpipe/pktpipe/stages/appproto"
	_ "github.com/pktpipe/pktpipe/stages/dns"
	_ "github.com/pktpipe/pktpipe/stages/features"
	_ "github.com/pktpipe/pktpipe/stages/http"
	_ "github.com/pktpipe/pktpipe/stages/icmpfb"
	_ "github.com/pktpipe/pktpipe/stages/probe"
	_ "github.com/pktpipe/pktpipe/stages/quic"
	_ "github.com/pktpipe/pktpipe/stages/rtt"
	_ "github.com/pktpipe/pktpipe/stages/ssh"
	_ "github.com/pktpipe/pktpipe/stages/tcpstate"
	_ "github.com/pktpipe/pktpipe/stages/tlsfp"
)
