// Package bpf holds pktpipe's eBPF programs and their bpf2go output.
//
// capture.c is a TC/TCX classifier that copies packet metadata and the first
// snaplen bytes to a perf event array (see sources/ebpf, which loads and
// attaches it). fanout.c is the PACKET_FANOUT_EBPF socket filter that
// sources/afpacket gives its fanout group: a symmetric flow hash that steers
// an ICMP error by the packet it quotes. The compiled objects
// (*_bpfel.o) and their Go bindings are committed, so building pktpipe needs no clang; regenerate them with
// `go generate ./bpf/` (clang, llvm and libbpf-dev's headers required).
package bpf

// The multiarch include directory supplies <asm/types.h> to clang's bpf target.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -type meta Capture capture.c
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel Fanout fanout.c
