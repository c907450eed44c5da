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

# Issue 17, what must be shown 1 and 2, at full length (needs root): live
# AF_PACKET capture in namespaces at ~100k packets/s for 60 s, the broker
# SIGKILLed for 30 s and restarted; a second pktpipe SIGKILLed during the
# outage and restarted on its spool. `make test` runs it short.
.PHONY: kafka-outage-demo
kafka-outage-demo:
	PKTPIPE_OUTAGE_DEMO=full $(GO) test -count=1 -timeout 30m -run LiveKafkaOutage -v ./test/kafka/

# Issue 17 part 4: the Kafka sink against kcat -P (librdkafka) on the same
# events and broker, zstd, acks=all; medians of THROUGHPUT_RUNS. Not part
# of `make test`. THROUGHPUT_FLAGS passes more (e.g. -nice -10 on a
# shared machine, -kafka-options batch_size=2000).
THROUGHPUT_RUNS ?= 3
.PHONY: kafka-throughput
kafka-throughput:
	$(GO) run ./test/kafka/throughput -runs $(THROUGHPUT_RUNS) $(THROUGHPUT_FLAGS)
