#!/usr/bin/env python3
"""Makes testdata/long.pcap: flows that last minutes of packet time, for
the NFStream oracle (run from stages/features: python3 testdata/make-long.py).

  - A TCP connection of about 6 minutes: handshake, then request/answer
    exchanges at random gaps of 0.2 ms to 20 s (sub-millisecond parts, so
    the millisecond truncation matters), then FINs. Both tools see one flow.
  - A UDP exchange every 50 s for 35 minutes. NFStream's active timeout
    (1800 s) ends its flow after 30 minutes and starts another; pktpipe
    has none (its idle timeout is not reached), so it writes one flow.
  - A TCP connection of 10 minutes (packets every 0.1 ms to 2 s), for the
    active timeout: with 60 s it gives 10 records in both tools.
Deterministic (seeded); needs dpkt (installed with nfstream)."""
import random
import socket

import dpkt

rnd = random.Random(13)
out = dpkt.pcap.Writer(open("testdata/long.pcap", "wb"), nano=True)
T0 = 1_750_000_000_000_000_000  # ns


def frame(src, dst, l4, proto):
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=proto, data=l4, ttl=64)
    ip.len = len(bytes(ip))
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=0x0800, data=ip))


def write(ns, buf):
    out.writepkt(buf, ts=ns / 1e9)


pkts = []
C, S = "10.14.0.1", "10.14.0.2"
seq = {C: 1000, S: 5000}


def tcp(ns, src, flags, n):
    dst = S if src == C else C
    sp, dp = (40000, 443) if src == C else (443, 40000)
    t = dpkt.tcp.TCP(sport=sp, dport=dp, seq=seq[src], ack=seq[dst], flags=flags, win=65535, data=b"\0" * n)
    seq[src] += n + (1 if flags & (dpkt.tcp.TH_SYN | dpkt.tcp.TH_FIN) else 0)
    pkts.append((ns, frame(src, dst, t, 6)))


t = T0 + 123_456
tcp(t, C, dpkt.tcp.TH_SYN, 0)
t += 412_345
tcp(t, S, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK, 0)
t += 98_765
tcp(t, C, dpkt.tcp.TH_ACK, 0)
while t < T0 + 360 * 10**9:
    t += rnd.randint(200_000, 20 * 10**9)
    tcp(t, C, dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH, rnd.randint(1, 1400))
    t += rnd.randint(100_000, 3_000_000)
    tcp(t, S, dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH, rnd.randint(1, 1400))
    if rnd.random() < 0.5:
        t += rnd.randint(10_000, 900_000)
        tcp(t, C, dpkt.tcp.TH_ACK, 0)
t += 1_000_000
tcp(t, C, dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK, 0)
t += 300_000
tcp(t, S, dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK, 0)
t += 200_000
tcp(t, C, dpkt.tcp.TH_ACK, 0)

t = T0 + 5 * 10**9
for i in range(42):  # 35 minutes
    for src, dst, sp, dp in ((C, S, 5353, 9999), (S, C, 9999, 5353)):
        u = dpkt.udp.UDP(sport=sp, dport=dp, data=b"\1" * rnd.randint(20, 300))
        u.ulen = len(bytes(u))
        pkts.append((t, frame(src, dst, u, 17)))
        t += rnd.randint(50_000, 5_000_000)
    t += 50 * 10**9

# The 10-minute connection (drawn after the others, so they stay as they were).
C2 = "10.14.0.3"
seq[C2] = 7000


def tcp2(ns, src, flags, n):
    dst = S if src == C2 else C2
    sp, dp = (41000, 8443) if src == C2 else (8443, 41000)
    t = dpkt.tcp.TCP(sport=sp, dport=dp, seq=seq[src], ack=seq[dst], flags=flags, win=65535, data=b"\0" * n)
    seq[src] += n + (1 if flags & (dpkt.tcp.TH_SYN | dpkt.tcp.TH_FIN) else 0)
    pkts.append((ns, frame(src, dst, t, 6)))


t = T0 + 7 * 10**9 + 654_321
tcp2(t, C2, dpkt.tcp.TH_SYN, 0)
t += 1_234_567
tcp2(t, S, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK, 0)
t += 345_678
tcp2(t, C2, dpkt.tcp.TH_ACK, 0)
end = t + 599 * 10**9
while t < end - 3 * 10**9:
    t += rnd.randint(100_000, 2 * 10**9)
    src = C2 if rnd.random() < 0.5 else S
    tcp2(t, src, dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH, rnd.randint(1, 1448))
t += 700_000
tcp2(t, C2, dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK, 0)
t += 400_000
tcp2(t, S, dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK, 0)
t += 200_000
tcp2(t, C2, dpkt.tcp.TH_ACK, 0)

for ns, buf in sorted(pkts, key=lambda p: p[0]):
    write(ns, buf)
out.close()
