// Package all registers every sink: adding one is a new package under
// sinks/ plus one import line here.
package all

import (
	_ "github.com/pktpipe/pktpipe/sinks/file"
	_ "github.com/pktpipe/pktpipe/sinks/kafka"
	_ "github.com/pktpipe/pktpipe/sinks/parquet"
	_ "github.com/pktpipe/pktpipe/sinks/stdout"
)
