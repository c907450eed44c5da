#!/bin/sh
# mkcapture.sh OUT.pcap — real DNS traffic for stages/dns's tshark oracle.
#
# Two network namespaces joined by a veth pair (10.53.0.1 client,
# 10.53.0.2 server, fd00:53::1/2; segmentation offloads off, so that the
# capture shows the segments a large answer over TCP takes): dnsmasq 2.90 serves the zone "test"
# authoritatively (SOA in NXDOMAIN answers) with A, AAAA, a CNAME chain,
# MX, TXT (several long strings: too large for UDP, so the UDP answer is
# truncated and dig retries over TCP), SRV, PTR, NS and an HTTPS record;
# 10.53.0.3, the same dnsmasq answering non-authoritatively, follows the
# CNAME chain and serves the PTR record. dig and a few lines of python query it; tcpdump on the client side
# writes OUT.pcap. Needs root, ip, dnsmasq, dig, tcpdump, python3.
# Bounded: ~20 queries, every step under a timeout.
set -eu
out=$(realpath -m "$1")
id=$$
C=pkdnsc$id S=pkdnss$id
tmp=$(mktemp -d)
cleanup() {
	[ -f "$tmp/dnsmasq.pid" ] && kill "$(cat "$tmp/dnsmasq.pid")" 2>/dev/null || true
	[ -f "$tmp/tcpdump.pid" ] && kill "$(cat "$tmp/tcpdump.pid")" 2>/dev/null || true
	ip netns del "$C" 2>/dev/null || true
	ip netns del "$S" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
ip netns add "$C"
ip netns add "$S"
ip link add vc$id netns "$C" type veth peer name vs$id netns "$S"
for ns in "$C" "$S"; do ip -n "$ns" link set lo up; done
ip -n "$C" link set vc$id mtu 1280 up
ip -n "$S" link set vs$id mtu 1280 up
ip -n "$C" addr add 10.53.0.1/24 dev vc$id
ip -n "$S" addr add 10.53.0.2/24 dev vs$id
ip -n "$S" addr add 10.53.0.3/24 dev vs$id
ip -n "$C" addr add fd00:53::1/64 dev vc$id nodad
ip -n "$S" addr add fd00:53::2/64 dev vs$id nodad
# A small MSS: the large TXT answer over TCP takes three segments.
ip -n "$C" route replace 10.53.0.0/24 dev vc$id advmss 900
# The kernel would hand tcpdump one 2 KB "segment" with these on.
ip netns exec "$S" ethtool -K vs$id tso off gso off gro off >/dev/null
ip netns exec "$C" ethtool -K vc$id tso off gso off gro off >/dev/null

long1=$(printf 'a%.0s' $(seq 1 250))
long2=$(printf 'b%.0s' $(seq 1 250))
long3=$(printf 'c%.0s' $(seq 1 250))
long4=$(printf 'd%.0s' $(seq 1 250))
long5=$(printf 'e%.0s' $(seq 1 250))
long6=$(printf 'f%.0s' $(seq 1 250))
long7=$(printf 'g%.0s' $(seq 1 250))
long8=$(printf 'h%.0s' $(seq 1 250))
long9=$(printf 'i%.0s' $(seq 1 250))
ip netns exec "$S" timeout 60 dnsmasq --keep-in-foreground --no-resolv --no-hosts --no-dhcp-interface=vs$id \
	--listen-address=10.53.0.2 --listen-address=10.53.0.3 --listen-address=fd00:53::2 --bind-interfaces --pid-file="$tmp/dnsmasq.pid" \
	--auth-server=ns.test,10.53.0.2 --auth-zone=test --auth-soa=2026120601,hostmaster.test,1200,180,1209600 --auth-ttl=300 \
	--host-record=host.test,10.53.0.10,fd00:53::10 --host-record=ns.test,10.53.0.2 \
	--cname=www.test,web.test --cname=web.test,host.test \
	--mx-host=test,mail.test,10 --host-record=mail.test,10.53.0.25 \
	--txt-record=txt.test,"v=spf1 -all","second string" \
	--txt-record=big.test,"$long1","$long2","$long3","$long4","$long5","$long6","$long7","$long8","$long9" \
	--srv-host=_sip._udp.test,host.test,5060,10,20 \
	--dns-rr=svc.test,65,000100000100060268320268330003000201bb \
	--ptr-record=10.0.53.10.in-addr.arpa,host.test \
	--log-facility="$tmp/dnsmasq.log" &
ip netns exec "$C" timeout 60 tcpdump -i vc$id --immediate-mode -U -n -s 0 -c 200 -w "$out" port 53 2>"$tmp/tcpdump.err" &
echo $! >"$tmp/tcpdump.pid"
# Wait for both (dnsmasq answers, tcpdump listens).
i=0
until ip netns exec "$C" dig +time=1 +tries=1 @10.53.0.2 ns.test A >/dev/null 2>&1 && grep -q listening "$tmp/tcpdump.err"; do
	i=$((i + 1)); [ $i -lt 50 ] || { echo "dnsmasq/tcpdump not ready" >&2; exit 1; }
	sleep 0.1
done
d() { ip netns exec "$C" timeout 5 dig +time=2 +tries=1 "$@" >/dev/null || true; }
d @10.53.0.2 host.test A
d @10.53.0.2 host.test AAAA
d @fd00:53::2 host.test AAAA
d @10.53.0.3 www.test A
d @10.53.0.2 test MX
d @10.53.0.2 txt.test TXT
d @10.53.0.2 big.test TXT +ignore
d @10.53.0.2 big.test TXT
d @10.53.0.2 _sip._udp.test SRV
d @10.53.0.2 test SOA
d @10.53.0.2 test NS
d @10.53.0.2 nope.test A
d @10.53.0.2 svc.test HTTPS
d @10.53.0.3 -x 10.53.0.10
d @10.53.0.2 +tcp host.test A
d @10.53.0.2 +noedns mail.test A
# Debian's python3 when there is one (a pyenv shim takes a second to start).
py=/usr/bin/python3
[ -x $py ] || py=python3
ip netns exec "$C" timeout 10 $py - <<'PY'
import socket, struct
def q(name, qtype, qid):
    b = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for l in name.split("."):
        b += bytes([len(l)]) + l.encode()
    return b + b"\0" + struct.pack(">HH", qtype, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
for i, (n, t) in enumerate([("host.test", 1), ("www.test", 28), ("nothere.test", 16)]):
    s.sendto(q(n, t, 0x5000 + i), ("10.53.0.2", 53))
    s.recv(4096)
# Two queries in one TCP segment, as a pipelining resolver sends them.
t = socket.create_connection(("10.53.0.2", 53), timeout=2)
m = q("host.test", 1, 0x6001) + b""
m2 = q("mail.test", 1, 0x6002)
t.sendall(struct.pack(">H", len(m)) + m + struct.pack(">H", len(m2)) + m2)
got = b""
while got.count(b"\x60\x01") + got.count(b"\x60\x02") < 2 and len(got) < 4096:
    c = t.recv(4096)
    if not c:
        break
    got += c
t.close()
PY
# Let tcpdump write the last packets, then stop it.
sleep 0.5
kill "$(cat "$tmp/tcpdump.pid")" "$(cat "$tmp/dnsmasq.pid")" 2>/dev/null || true
wait
