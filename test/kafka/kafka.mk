# Included by the main Makefile: a local single-node Kafka broker for the
# sinks/kafka tests (see test/kafka/kafka.sh for settings and state).
KAFKA_SH := $(dir $(lastword $(MAKEFILE_LIST)))kafka.sh

.PHONY: kafka-up kafka-down kafka-status kafka-clean

kafka-up:
	@bash $(KAFKA_SH) up

kafka-down:
	@bash $(KAFKA_SH) down

kafka-status:
	@bash $(KAFKA_SH) status

kafka-clean:
	@bash $(KAFKA_SH) clean

# event_id (issue 17): distinct on every event of the 2M-packet bench
# capture, and the same with 1 and 4 workers (test/eventid; the
# conformance captures and a 200k-packet mix run in `make test`).
.PHONY: event-id-check
event-id-check:
	$(GO) run ./bench/cmd/benchrun -packets $(BENCH_PACKETS) -modes pcapgo-read >/dev/null
	PKTPIPE_EVENTID_BENCH=$${TMPDIR:-/tmp}/pktpipe-bench/synth-seed1-n$(BENCH_PACKETS).pcap \
	  $(GO) test -count=1 -timeout 30m -run Bench -v ./test/eventid/
