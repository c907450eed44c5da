#!/usr/bin/env bash
# kafka.sh — a single-node Apache Kafka (KRaft) broker on loopback for
# pktpipe's tests, built from Maven Central jars (no tarball download).
#
#   kafka.sh up       start (idempotent) and wait until it serves metadata
#   kafka.sh down     SIGTERM, wait for exit (idempotent)
#   kafka.sh kill     SIGKILL, to simulate a crash (tests use it)
#   kafka.sh pause [S] SIGSTOP: the broker hangs (connections open, no
#                     answers), an outage without a 20 s restart after it;
#                     a detached watchdog resumes it after S seconds
#                     (default 120) should the test be killed first
#   kafka.sh resume   SIGCONT (and `up` resumes a stopped broker too)
#   kafka.sh status   exit 0 when up and answering, 1 when starting, 3 when down
#   kafka.sh clean    down, then delete the broker's data
#   kafka.sh logs     tail of the broker log
#   kafka.sh env      addresses, certificate paths and credentials of the
#                     TLS/SASL listeners, as NAME=value lines (for tests)
#
# Listeners: PLAINTEXT 127.0.0.1:$PORT (9092), the controller on PORT+1,
# SASL_SSL on PORT+2 (TLS + SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN, user
# pktpipe) and SSL on PORT+3 (TLS, client certificate required). A CA, the
# broker's and a client's certificate are made with openssl in
# $STATE/tls (made again when missing or about to expire); the SCRAM
# users are written at storage-format time (kafka-storage format
# --add-scram).
#
# The jars are resolved once by Maven (default ~/.m2) and copied into
# $PKTPIPE_KAFKA_CACHE (default ~/.cache/pktpipe-kafka/libs-<pom hash>);
# the broker's data, log, PID file and rendered config live in
# $PKTPIPE_KAFKA_STATE (default ${TMPDIR:-/tmp}/pktpipe-kafka-<uid>-<port>)
# and survive down/up, so a restarted broker keeps its topics. The data
# directory is $STATE/data-<config hash>: the hash covers server.properties,
# the SCRAM users and the certificates, so a changed configuration gets a
# freshly formatted storage, and a broker running with another
# configuration is restarted by `up`.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PORT=${PKTPIPE_KAFKA_PORT:-9092}
CONTROLLER_PORT=${PKTPIPE_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}
SASL_SSL_PORT=${PKTPIPE_KAFKA_SASL_SSL_PORT:-$((PORT + 2))}
SSL_PORT=${PKTPIPE_KAFKA_SSL_PORT:-$((PORT + 3))}
CACHE=${PKTPIPE_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pktpipe-kafka}
STATE=${PKTPIPE_KAFKA_STATE:-${TMPDIR:-/tmp}/pktpipe-kafka-$(id -u)-$PORT}
START_TIMEOUT=${PKTPIPE_KAFKA_START_TIMEOUT:-180}
STOP_TIMEOUT=${PKTPIPE_KAFKA_STOP_TIMEOUT:-30}
HEAP=${PKTPIPE_KAFKA_HEAP:-768m}
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java
# A fixed cluster id (base64url of 16 bytes) so that data formatted once
# stays valid across restarts.
CLUSTER_ID=cGt0cGlwZS1rYWZrYS10ZQ
# The test user of the SASL_SSL listener (loopback only, a test broker).
SASL_USER=pktpipe
SASL_PASSWORD=pktpipe-test-secret

PIDFILE=$STATE/kafka.pid
LOG=$STATE/kafka.log
PROPS=$STATE/server.properties
TLS=$STATE/tls
DATA= # $STATE/data-<hash>, set by config_hash
HASH=

say() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found on PATH ($2)"; }

# pid of our broker if it is alive, else nothing. The cmdline check guards
# against a recycled PID.
broker_pid() {
	[[ -f $PIDFILE ]] || return 1
	local pid
	pid=$(<"$PIDFILE")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka' || return 1
	echo "$pid"
}

# answers reports whether a broker serves metadata on our port.
answers() {
	timeout 10 kcat -b "127.0.0.1:$PORT" -L -m 3 2>/dev/null | grep -q "broker 1 at 127.0.0.1:$PORT"
}

# answers_tls reports whether both TLS listeners serve metadata, each
# asked with its own authentication (PLAIN over TLS; client certificate).
# Not SCRAM: librdkafka before 2.6.1 (Debian 12's kcat has 2.0.2) sends a
# SCRAM client-final nonce that Kafka 4 rejects (confluentinc/librdkafka#4895).
answers_tls() {
	timeout 10 kcat -b "127.0.0.1:$SASL_SSL_PORT" -L -m 3 -X security.protocol=SASL_SSL \
		-X sasl.mechanisms=PLAIN -X "sasl.username=$SASL_USER" -X "sasl.password=$SASL_PASSWORD" \
		-X "ssl.ca.location=$TLS/ca.pem" 2>/dev/null | grep -q "broker 1 at 127.0.0.1:$SASL_SSL_PORT" &&
		timeout 10 kcat -b "127.0.0.1:$SSL_PORT" -L -m 3 -X security.protocol=SSL \
			-X "ssl.ca.location=$TLS/ca.pem" -X "ssl.certificate.location=$TLS/client.pem" \
			-X "ssl.key.location=$TLS/client.key" 2>/dev/null | grep -q "broker 1 at 127.0.0.1:$SSL_PORT"
}

# certs makes the CA, the broker's certificate (SAN 127.0.0.1, localhost)
# and a client certificate in $TLS unless they exist and stay valid for
# another day. EC P-256 keys: quick to make. Unencrypted PKCS#8 keys.
certs() {
	local f ok=1
	for f in ca.pem ca.key broker.pem broker.key broker.keystore.pem client.pem client.key; do
		[[ -s $TLS/$f ]] || ok=0
	done
	if ((ok)); then
		for f in ca.pem broker.pem client.pem; do
			openssl x509 -in "$TLS/$f" -noout -checkend 86400 >/dev/null 2>&1 || ok=0
		done
	fi
	((ok)) && return 0
	need openssl "apt-get install openssl"
	say "making a test CA and certificates in $TLS"
	local tmp
	tmp=$(mktemp -d "$STATE/tls.XXXXXX")
	(
		cd "$tmp"
		key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
		key ca.key
		openssl req -x509 -new -key ca.key -sha256 -days 825 -subj "/CN=pktpipe test CA" \
			-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
			-out ca.pem 2>/dev/null
		# leaf NAME CN EXTFILE
		leaf() {
			key "$1.key"
			openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr" 2>/dev/null
			openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
				-sha256 -days 825 -extfile "$3" -out "$1.pem" 2>/dev/null
		}
		printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
			"extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" >broker.ext
		printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
			"extendedKeyUsage=clientAuth" >client.ext
		leaf broker 127.0.0.1 broker.ext
		leaf client pktpipe-client client.ext
		# Kafka's PEM key store: the private key, then the chain.
		cat broker.key broker.pem ca.pem >broker.keystore.pem
		rm -f ./*.csr ./*.ext
		chmod 600 ./*.key broker.keystore.pem
	) || { rm -rf "$tmp"; die "openssl failed to make the certificates"; }
	rm -rf "$TLS"
	mv "$tmp" "$TLS"
}

# scram_args are the format-time SCRAM credentials of the test user.
scram_args() {
	echo "--add-scram SCRAM-SHA-256=[name=$SASL_USER,password=$SASL_PASSWORD]" \
		"--add-scram SCRAM-SHA-512=[name=$SASL_USER,password=$SASL_PASSWORD]"
}

# config_hash sets HASH and DATA from what the storage and the running
# broker depend on: the template, the SCRAM users, the cluster id and the
# certificates (certs first).
config_hash() {
	HASH=$({
		cat "$HERE/server.properties"
		scram_args
		echo "$CLUSTER_ID $PORT $CONTROLLER_PORT $SASL_SSL_PORT $SSL_PORT"
		cat "$TLS/ca.pem" "$TLS/broker.pem" "$TLS/client.pem"
	} | sha256sum | cut -c1-12)
	DATA=$STATE/data-$HASH
}

# running_hash prints the config hash a running broker was started with.
running_hash() {
	tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | sed -n 's/^-Dpktpipe.kafka.confhash=//p'
}

show_log() {
	if [[ -f $LOG ]]; then
		say "last lines of $LOG:"
		tail -n "${1:-40}" "$LOG" >&2
	fi
}

lock() {
	mkdir -p "$STATE"
	exec 9>"$STATE/lock"
	flock -w "$START_TIMEOUT" 9 || die "another kafka.sh holds $STATE/lock"
}

# libs prints the directory of the broker's jars, resolving them first if
# the cache has none for this pom.xml.
libs() {
	local key dir tmp
	key=$(sha256sum "$HERE/pom.xml" | cut -c1-12)
	dir=$CACHE/libs-$key
	if [[ -f $dir/.complete ]]; then
		echo "$dir"
		return
	fi
	need mvn "apt-get install maven"
	mkdir -p "$CACHE"
	tmp=$(mktemp -d "$CACHE/build.XXXXXX")
	cp "$HERE/pom.xml" "$tmp/pom.xml"
	say "resolving broker jars with Maven into $dir (first run only)"
	if ! mvn -q -B -f "$tmp/pom.xml" package >"$tmp/mvn.log" 2>&1; then
		tail -n 40 "$tmp/mvn.log" >&2
		die "mvn package failed (log: $tmp/mvn.log)"
	fi
	touch "$tmp/target/libs/.complete"
	rm -rf "$dir"
	mv "$tmp/target/libs" "$dir"
	rm -rf "$tmp"
	echo "$dir"
}

java_opts() {
	echo "-Xms256m -Xmx$HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError" \
		"-Djava.awt.headless=true -Dlog4j2.configurationFile=file:$HERE/log4j2.properties"
}

cmd_up() {
	need "$JAVA" "Java 17+"
	need kcat "apt-get install kcat"
	need flock "util-linux"
	lock
	local pid mark deadline lib start=$SECONDS
	certs
	config_hash
	if pid=$(broker_pid) && [[ $(running_hash "$pid") != "$HASH" ]]; then
		# Started by an older kafka.sh, or before the configuration or the
		# certificates changed: its listeners or credentials may differ.
		say "pid $pid runs another configuration (hash ${HASH} wanted); restarting it"
		stop TERM
	fi
	if pid=$(broker_pid); then
		# A broker left paused (kafka.sh pause) by a test that was killed.
		if [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == T ]]; then
			say "pid $pid is stopped (SIGSTOP); resuming it"
			rm -f "$STATE/paused"
			kill -CONT "$pid"
		fi
		if answers; then
			say "already up (pid $pid, 127.0.0.1:$PORT)"
			return 0
		fi
		say "pid $pid is starting; waiting"
		mark=0
	else
		if answers; then
			die "something not started by kafka.sh answers on 127.0.0.1:$PORT; stop it or set PKTPIPE_KAFKA_PORT"
		fi
		lib=$(libs)
		sed -e "s|@DATA_DIR@|$DATA|" -e "s|@PORT@|$PORT|g" -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" \
			-e "s|@SASL_SSL_PORT@|$SASL_SSL_PORT|g" -e "s|@SSL_PORT@|$SSL_PORT|g" \
			-e "s|@TLS_DIR@|$TLS|g" -e "s|@PASSWORD@|$SASL_PASSWORD|g" \
			"$HERE/server.properties" >"$PROPS"
		chmod 600 "$PROPS"
		if [[ ! -f $DATA/meta.properties ]]; then
			# Storage of other configurations is of no use any more.
			local old
			for old in "$STATE"/data-*; do
				[[ -d $old && $old != "$DATA" ]] && rm -rf "$old" && say "removed $old (another configuration)"
			done
			rm -rf "$DATA"
			mkdir -p "$DATA"
			say "formatting $DATA (config hash $HASH)"
			# shellcheck disable=SC2046
			"$JAVA" $(java_opts) -cp "$lib/*" kafka.tools.StorageTool format \
				-t "$CLUSTER_ID" -c "$PROPS" $(scram_args) >>"$LOG" 2>&1 || { show_log; die "storage format failed"; }
		fi
		touch "$LOG"
		mark=$(wc -l <"$LOG")
		# setsid: the broker outlives the shell (or go test) that started it.
		# The config hash on the command line tells a later `up` what runs.
		# The broker must not inherit any other descriptor of its caller:
		# `flock LOCKFILE kafka.sh up` would otherwise leave the tests' lock
		# held by the broker for as long as it runs.
		# shellcheck disable=SC2046
		(
			for fd in /proc/self/fd/*; do
				fd=${fd##*/}
				((fd > 2)) && eval "exec $fd>&-" 2>/dev/null
			done
			exec setsid "$JAVA" $(java_opts) "-Dpktpipe.kafka.confhash=$HASH" -cp "$lib/*" kafka.Kafka "$PROPS"
		) >>"$LOG" 2>&1 </dev/null &
		pid=$!
		echo "$pid" >"$PIDFILE"
		say "started pid $pid, log $LOG"
	fi
	deadline=$((SECONDS + START_TIMEOUT))
	while ((SECONDS < deadline)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			rm -f "$PIDFILE"
			show_log 60
			die "broker exited during startup"
		fi
		if tail -n "+$((mark + 1))" "$LOG" | grep -q 'Kafka Server started' && answers; then
			# The TLS listeners can lag the plaintext one on a loaded
			# machine (load 15: more than the 1 s this waited once).
			local tls_deadline=$((SECONDS + 30))
			until answers_tls; do
				if ((SECONDS >= tls_deadline)); then
					show_log 60
					die "the TLS listeners (127.0.0.1:$SASL_SSL_PORT SASL_SSL, 127.0.0.1:$SSL_PORT SSL) do not answer kcat"
				fi
				sleep 1
			done
			say "up (pid $pid, 127.0.0.1:$PORT; SASL_SSL :$SASL_SSL_PORT, SSL :$SSL_PORT) after $((SECONDS - start))s"
			return 0
		fi
		sleep 0.5
	done
	show_log 60
	kill -TERM "$pid" 2>/dev/null || true
	die "broker not ready within ${START_TIMEOUT}s (sent SIGTERM to pid $pid)"
}

# stop sends sig and waits up to STOP_TIMEOUT for the broker to exit.
stop() {
	local sig=$1 pid deadline
	if ! pid=$(broker_pid); then
		rm -f "$PIDFILE"
		say "not running"
		return 0
	fi
	kill "-$sig" "$pid"
	deadline=$((SECONDS + STOP_TIMEOUT))
	while kill -0 "$pid" 2>/dev/null; do
		if ((SECONDS >= deadline)); then
			say "pid $pid still alive ${STOP_TIMEOUT}s after SIG$sig; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			sleep 1
			break
		fi
		sleep 0.2
	done
	rm -f "$PIDFILE"
	say "stopped pid $pid (SIG$sig)"
}

cmd_status() {
	local pid
	if pid=$(broker_pid); then
		if answers; then
			echo "up pid=$pid addr=127.0.0.1:$PORT state=$STATE"
			return 0
		fi
		echo "starting pid=$pid addr=127.0.0.1:$PORT log=$LOG"
		return 1
	fi
	echo "down addr=127.0.0.1:$PORT state=$STATE"
	return 3
}

cmd_env() {
	[[ -s $TLS/ca.pem ]] || die "no certificates in $TLS: run kafka.sh up first"
	cat <<EOT
KAFKA_PLAINTEXT=127.0.0.1:$PORT
KAFKA_SASL_SSL=127.0.0.1:$SASL_SSL_PORT
KAFKA_SSL=127.0.0.1:$SSL_PORT
KAFKA_CA=$TLS/ca.pem
KAFKA_CLIENT_CERT=$TLS/client.pem
KAFKA_CLIENT_KEY=$TLS/client.key
KAFKA_SASL_USER=$SASL_USER
KAFKA_SASL_PASSWORD=$SASL_PASSWORD
EOT
}

case ${1:-} in
up) cmd_up ;;
down) lock && stop TERM ;;
kill) lock && stop KILL ;;
pause)
	pid=$(broker_pid) || die "not running"
	max=${2:-120}
	[[ $max =~ ^[0-9]+$ ]] || die "pause: seconds, not $max"
	kill -STOP "$pid"
	# A test killed while the broker is paused must not leave it hung.
	# The token: a watchdog from an earlier pause (already resumed) does
	# not cut a later one short.
	token=$$-$(date +%s%N)
	echo "$token" >"$STATE/paused"
	setsid bash -c "sleep $max; [[ \$(cat '$STATE/paused' 2>/dev/null) == $token ]] && kill -CONT $pid && rm -f '$STATE/paused'" \
		</dev/null >/dev/null 2>&1 &
	say "paused pid $pid (resumed in ${max}s at the latest)"
	;;
resume)
	pid=$(broker_pid) || die "not running"
	rm -f "$STATE/paused"
	kill -CONT "$pid"
	say "resumed pid $pid"
	;;
status) cmd_status ;;
clean) lock && stop TERM && rm -rf "$STATE"/data-* "$STATE/data" "$PROPS" "$LOG" "$TLS" && say "removed $STATE/data-* and $TLS" ;;
env) cmd_env ;;
logs) tail -n "${2:-100}" "$LOG" ;;
*)
	echo "usage: $0 up|down|kill|pause|resume|status|clean|logs|env" >&2
	exit 2
	;;
esac
