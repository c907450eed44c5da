#!/usr/bin/env bash
# Re-creates testdata/sample.pcap from real programs in three network
# namespaces (client — router — server), captured with tcpdump on the
# client's link. Needs root, iproute2, tcpdump, curl, openssl, dig,
# traceroute, ping, python3. Addresses: 10.99.0.0/16 and fd00:99::/32 only.
set -euo pipefail
out=${1:-$(dirname "$0")/sample.pcap}
tag=pps$$
C=$tag-c R=$tag-r S=$tag-s
work=$(mktemp -d)
cleanup() {
  set +e
  kill $(jobs -p) 2>/dev/null; wait 2>/dev/null
  ip netns del $C; ip netns del $R; ip netns del $S
  rm -rf "$work"
}
trap cleanup EXIT
for n in $C $R $S; do ip netns add $n; ip -n $n link set lo up; done
ip link add c0 netns $C type veth peer name r0 netns $R
ip link add s0 netns $S type veth peer name r1 netns $R
ip -n $C addr add 10.99.1.2/24 dev c0; ip -n $C addr add fd00:99:1::2/64 dev c0 nodad
ip -n $R addr add 10.99.1.1/24 dev r0; ip -n $R addr add fd00:99:1::1/64 dev r0 nodad
ip -n $R addr add 10.99.2.1/24 dev r1; ip -n $R addr add fd00:99:2::1/64 dev r1 nodad
ip -n $S addr add 10.99.2.2/24 dev s0; ip -n $S addr add fd00:99:2::2/64 dev s0 nodad
for l in "$C c0" "$R r0" "$R r1" "$S s0"; do set -- $l; ip -n $1 link set $2 up; done
ip -n $C route add default via 10.99.1.1; ip -n $C -6 route add default via fd00:99:1::1
ip -n $S route add default via 10.99.2.1; ip -n $S -6 route add default via fd00:99:2::1
ip netns exec $R sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
# Offloads off so the capture holds wire-sized segments.
for l in "$C c0" "$S s0"; do set -- $l; ip netns exec $1 ethtool -K $2 tso off gso off gro off 2>/dev/null || true; done

# Server side: TLS (openssl s_server), HTTP, a tiny DNS responder.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
  -subj "/C=XX/O=pktpipe test/CN=server.test" -addext "subjectAltName=DNS:server.test,DNS:www.server.test" \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
ip netns exec $S openssl s_server -quiet -accept 443 -cert "$work/cert.pem" -key "$work/key.pem" -www >/dev/null 2>&1 &
ip netns exec $S python3 -m http.server 80 --bind 10.99.2.2 >/dev/null 2>&1 &
cat > "$work/dns.py" <<'PY'
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("10.99.2.2", 53))
while True:
    q, a = s.recvfrom(512)
    tid, flags, qd = struct.unpack("!HHH", q[:6])
    qname_end = q.index(b"\0", 12) + 5
    question = q[12:qname_end]
    ans = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton("10.99.2.2")
    s.sendto(struct.pack("!HHHHHH", tid, 0x8180, 1, 1, 0, 0) + question + ans, a)
PY
ip netns exec $S python3 "$work/dns.py" &
sleep 1

ip netns exec $C tcpdump -i c0 -s 0 -U -w "$work/cap.pcap" 2>/dev/null &
sleep 1
ip netns exec $C ping -c 3 -i 0.2 10.99.2.2 >/dev/null
ip netns exec $C ping -6 -c 3 -i 0.2 fd00:99:2::2 >/dev/null
ip netns exec $C curl -sk --tlsv1.3 --resolve server.test:443:10.99.2.2 https://server.test/ -o /dev/null
ip netns exec $C curl -sk --tlsv1.2 --tls-max 1.2 --resolve server.test:443:10.99.2.2 https://server.test/ -o /dev/null
ip netns exec $C curl -s http://10.99.2.2/ -o /dev/null
ip netns exec $C dig +tries=1 +time=1 @10.99.2.2 server.test A >/dev/null || true
ip netns exec $C dig +tries=1 +time=1 -p 5353 @10.99.2.2 server.test A >/dev/null || true
ip netns exec $C traceroute -n -q 1 -w 1 -m 3 10.99.2.2 >/dev/null || true
sleep 1
kill %4 2>/dev/null || true  # tcpdump (4th background job)
sleep 0.5
cp "$work/cap.pcap" "$out"
echo "wrote $out: $(tcpdump -r "$out" 2>/dev/null | wc -l) packets"
