// Package all registers every source kind: adding one is a new package
// under sources/ plus one import line here.
package all

import (
	_ "github.com/pktpipe/pktpipe/sources/afpacket"
	_ "github.com/pktpipe/pktpipe/sources/ebpf"
	_ "github.com/pktpipe/pktpipe/sources/pcapfile"
)
