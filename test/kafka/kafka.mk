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
