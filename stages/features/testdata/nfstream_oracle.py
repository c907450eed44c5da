#!/usr/bin/env python3
"""Oracle for stages/features: NFStream's flows for each capture, one JSON
object per line, with the capture's path under "file", then {"file": path,
"done": true} after each capture. Arguments: the SPLT
length, the active timeout in seconds (0: NFStream's default, 1800), then
the captures. NFStream's defaults otherwise (idle_timeout 120 s,
accounting_mode 0); n_dissections=0 only skips nDPI,
which no statistical feature depends on."""
import json
import sys

import nfstream

KEEP = ("src_ip", "dst_ip", "src_port", "dst_port", "protocol", "expiration_id", "tunnel_id")


def main():
    splt = int(sys.argv[1])
    active = {"active_timeout": int(sys.argv[2])} if int(sys.argv[2]) > 0 else {}
    for path in sys.argv[3:]:
        try:
            streamer = nfstream.NFStreamer(source=path, statistical_analysis=True,
                                           splt_analysis=splt, n_dissections=0, **active)
            for f in streamer:
                d = {"file": path}
                for k in f.keys():
                    if k in KEEP or k.startswith(("bidirectional_", "src2dst_", "dst2src_", "splt_")):
                        d[k] = getattr(f, k)
                print(json.dumps(d))
        except Exception as e:  # a capture NFStream cannot read: say so, go on
            print(json.dumps({"file": path, "error": str(e)}))
            continue
        print(json.dumps({"file": path, "done": True}))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
