#!/bin/sh
# Makes testdata/real.pcap: real traffic between two network namespaces
# (10.13.0.1 client, 10.13.0.2 server, a veth pair with offloads off so
# packets are MTU-sized), captured on the client's side with tcpdump,
# headers only (-s 128: the features use the wire length, and it keeps the
# file small):
#   - curl -k over TLS to openssl s_server -www (3 connections)
#   - a 4 MB HTTP download (python3 -m http.server), with curl
#   - curl to a closed port (SYN answered by RST)
#   - ping -c 10 -i 0.2
#   - dig, 5 queries to a UDP responder that answers each query
# Run as root from stages/features: sh testdata/make-capture.sh
set -eu
out=$(pwd)/testdata/real.pcap
tmp=$(mktemp -d)
c=pktpipe-feat-c
s=pktpipe-feat-s
cleanup() {
	[ -f "$tmp/tcpdump.pid" ] && kill "$(cat "$tmp/tcpdump.pid")" 2>/dev/null || true
	for p in "$tmp"/*.srvpid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
	ip netns del $c 2>/dev/null || true
	ip netns del $s 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
ip netns add $c
ip netns add $s
ip link add vc netns $c type veth peer name vs netns $s
ip -n $c addr add 10.13.0.1/24 dev vc
ip -n $s addr add 10.13.0.2/24 dev vs
ip -n $c link set vc up
ip -n $s link set vs up
ip -n $c link set lo up
ip -n $s link set lo up
for ns in $c $s; do
	dev=vc
	[ $ns = $s ] && dev=vs
	ip netns exec $ns ethtool -K $dev tso off gso off gro off >/dev/null 2>&1 || true
done

# Servers.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/key.pem" -out "$tmp/cert.pem" \
	-days 1 -subj /CN=server.test >/dev/null 2>&1
ip netns exec $s openssl s_server -quiet -www -accept 4433 -cert "$tmp/cert.pem" -key "$tmp/key.pem" \
	>/dev/null 2>&1 &
echo $! >"$tmp/tls.srvpid"
mkdir "$tmp/www"
head -c 4000000 /dev/urandom >"$tmp/www/blob"
(cd "$tmp/www" && exec ip netns exec $s python3 -m http.server 8080 --bind 10.13.0.2 >/dev/null 2>&1) &
echo $! >"$tmp/http.srvpid"
ip netns exec $s python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.13.0.2", 53))
while True:
    q, a = s.recvfrom(2048)
    # The query back as a response: QR set, RA set, no answers.
    s.sendto(q[:2] + bytes([q[2] | 0x80, q[3] | 0x80]) + q[4:], a)
' &
echo $! >"$tmp/dns.srvpid"
# Wait for the servers to listen (poll, bounded).
for i in $(seq 100); do
	if ip netns exec $s ss -ltn | grep -q ':4433' && ip netns exec $s ss -ltn | grep -q ':8080' &&
		ip netns exec $s ss -lun | grep -q ':53'; then
		break
	fi
	sleep 0.1
done

ip netns exec $c tcpdump -i vc -s 128 -U -w "$out" >"$tmp/tcpdump.log" 2>&1 &
echo $! >"$tmp/tcpdump.pid"
for i in $(seq 100); do
	grep -q listening "$tmp/tcpdump.log" && break
	sleep 0.1
done

for i in 1 2 3; do
	ip netns exec $c curl -sk --max-time 5 https://10.13.0.2:4433/ >/dev/null
done
ip netns exec $c curl -s --max-time 20 -o /dev/null http://10.13.0.2:8080/blob
ip netns exec $c curl -s --max-time 5 http://10.13.0.2:9/ >/dev/null || true
ip netns exec $c ping -q -c 10 -i 0.2 10.13.0.2 >/dev/null
for n in a b c d e; do
	ip netns exec $c dig +tries=1 +time=2 @10.13.0.2 $n.example.test A >/dev/null || true
done

# Let the last packets reach the file, then stop tcpdump.
sleep 1
kill "$(cat "$tmp/tcpdump.pid")"
wait "$(cat "$tmp/tcpdump.pid")" 2>/dev/null || true
rm -f "$tmp/tcpdump.pid"
ls -l "$out"
