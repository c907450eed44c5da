// Package pcapfile is pktpipe's capture-file source: it reads classic pcap
// and pcapng files, plain or gzip/zstd compressed, into pooled batches.
//
// The reader is written by hand instead of using gopacket's pcapgo reader
// because a source here must (1) name the byte offset of every format error
// so that a damaged capture can be located and cut, (2) copy each record
// exactly once, from the read buffer into the batch arena, with no
// allocation per packet, and (3) keep per-interface state (link type,
// if_tsresol including power-of-two resolutions, if_tsoffset) across
// several pcapng sections. pcapgo is used in the tests as an independent
// oracle and to write inputs.
//
// Design:
//
//   - Each file is opened in turn; its first bytes decide the compression
//     (gzip 1f 8b, zstd 28 b5 2f fd), never its name. "-" is Config.Stdin.
//   - A 1 MiB bufio.Reader sits over the decompressed stream. A record is
//     Peek'ed whole (header and data), validated, handed out as a slice of
//     the read buffer, and Discard'ed on the next call, so the only copy is
//     Batch.Append. Offsets count decompressed bytes consumed.
//   - Records are bounded: a classic record's caplen may not exceed
//     max(snaplen, 256 KiB) (Wireshark's standard maximum; some writers
//     exceed a small snaplen); a pcapng packet block must fit the read
//     buffer; other pcapng blocks may be up to 16 MiB and are skipped by
//     their length. Anything larger is reported as corrupt rather than
//     trusted, so garbage cannot make the reader allocate or wait for
//     gigabytes.
//   - Each packet's Index is its 1-based record number across all the
//     files of a Run, in reading order (Suricata's pcap_cnt, Wireshark's
//     frame number for a single file); a Run starts again from 1.
//   - Packets longer than the pool's MaxPacketBytes are cut to it and
//     counted (a loss counter), never passed to Append (which would panic).
//   - On a format error the batch in hand is sent first, then the error is
//     returned; on context cancellation the batch in hand is sent and Run
//     returns nil. Cancellation is seen between batches and during replay
//     sleeps; a read blocked on stdin is not interrupted.
//   - Offsets in errors count decompressed bytes; for gzip or zstd input
//     the message says "offset N in the decompressed (gzip) stream", since
//     N can exceed the size of the file itself.
//   - A capture of a link type the decoder (stages/decode) cannot read is
//     read all the same, but its packets can only end as
//     malformed=unknown_link: the source warns on Config.Log, once per file
//     and link type, naming it.
//   - Close frees the decompressors and the read buffer, which Run keeps
//     from one run to the next; Run closes each file as it finishes it.
//   - The kind "pcap" (register.go) builds the source from the registry's
//     SourceEnv, with --replay-speed as its option, and turns a filter
//     expression into a user-space filter.
//   - Replay pacing (Config.ReplaySpeed) computes each packet's due time
//     from its capture timestamp relative to the first packet; a batch is
//     sent before sleeping so that due packets are never held back.
//
// Counters (Config.Stats): pktpipe_pcapfile_packets_total, _bytes_total,
// _files_total (files read to the end) and the loss counter
// _truncated_total (packets cut to the batch size). Errors are returned.
package pcapfile
