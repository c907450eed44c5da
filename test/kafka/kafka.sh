#!/usr/bin/env bash
# kafka.sh — a single-node Apache Kafka (KRaft) broker on loopback for
# pktpipe's tests, built from Maven Central jars (no tarball download).
#
#   kafka.sh up       start (idempotent) and wait until it serves metadata
#   kafka.sh down     SIGTERM, wait for exit (idempotent)
#   kafka.sh kill     SIGKILL, to simulate a crash (tests use it)
#   kafka.sh status   exit 0 when up and answering, 1 when starting, 3 when down
#   kafka.sh clean    down, then delete the broker's data
#   kafka.sh logs     tail of the broker log
#
# The jars are resolved once by Maven (default ~/.m2) and copied into
# $PKTPIPE_KAFKA_CACHE (default ~/.cache/pktpipe-kafka/libs-<pom hash>);
# the broker's data, log, PID file and rendered config live in
# $PKTPIPE_KAFKA_STATE (default ${TMPDIR:-/tmp}/pktpipe-kafka-<uid>-<port>)
# and survive down/up, so a restarted broker keeps its topics.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PORT=${PKTPIPE_KAFKA_PORT:-9092}
CONTROLLER_PORT=${PKTPIPE_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}
CACHE=${PKTPIPE_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pktpipe-kafka}
STATE=${PKTPIPE_KAFKA_STATE:-${TMPDIR:-/tmp}/pktpipe-kafka-$(id -u)-$PORT}
START_TIMEOUT=${PKTPIPE_KAFKA_START_TIMEOUT:-180}
STOP_TIMEOUT=${PKTPIPE_KAFKA_STOP_TIMEOUT:-30}
HEAP=${PKTPIPE_KAFKA_HEAP:-768m}
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java
# A fixed cluster id (base64url of 16 bytes) so that data formatted once
# stays valid across restarts.
CLUSTER_ID=cGt0cGlwZS1rYWZrYS10ZQ

PIDFILE=$STATE/kafka.pid
LOG=$STATE/kafka.log
DATA=$STATE/data
PROPS=$STATE/server.properties

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
	if pid=$(broker_pid); then
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
		mkdir -p "$DATA"
		sed -e "s|@DATA_DIR@|$DATA|" -e "s|@PORT@|$PORT|g" -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" \
			"$HERE/server.properties" >"$PROPS"
		if [[ ! -f $DATA/meta.properties ]]; then
			# shellcheck disable=SC2046
			"$JAVA" $(java_opts) -cp "$lib/*" kafka.tools.StorageTool format \
				-t "$CLUSTER_ID" -c "$PROPS" >>"$LOG" 2>&1 || { show_log; die "storage format failed"; }
		fi
		touch "$LOG"
		mark=$(wc -l <"$LOG")
		# setsid: the broker outlives the shell (or go test) that started it.
		# shellcheck disable=SC2046
		setsid "$JAVA" $(java_opts) -cp "$lib/*" kafka.Kafka "$PROPS" >>"$LOG" 2>&1 </dev/null 9>&- &
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
			say "up (pid $pid, 127.0.0.1:$PORT) after $((SECONDS - start))s"
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

case ${1:-} in
up) cmd_up ;;
down) lock && stop TERM ;;
kill) lock && stop KILL ;;
status) cmd_status ;;
clean) lock && stop TERM && rm -rf "$DATA" "$PROPS" "$LOG" && say "removed $DATA" ;;
logs) tail -n "${2:-100}" "$LOG" ;;
*)
	echo "usage: $0 up|down|kill|status|clean|logs" >&2
	exit 2
	;;
esac
