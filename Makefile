# pktpipe — see README.md. Two commands on a fresh machine:
#   make run    builds pktpipe and runs it on the bundled sample capture
#   make test   runs the test suite
GO       ?= go
BIN      := bin/pktpipe
PKGS     := ./...
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
BENCH_PACKETS ?= 2000000

.PHONY: all build run test test-race bench bench-compare bench-instructions shard-check fuzz generate vet clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/pktpipe

run: build
	$(BIN) -r testdata/sample.pcap --workers 2

vet:
	$(GO) vet $(PKGS)

# Static analysis, failing on any finding: go vet, staticcheck (pinned; go
# run fetches and caches it, nothing to install) and gofmt.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
.PHONY: lint
lint: vet
	$(GO) run $(STATICCHECK) $(PKGS)
	@unformatted=$$("$$($(GO) env GOROOT)/bin/gofmt" -l .); if [ -n "$$unformatted" ]; then \
	  echo "not gofmt-ed (gofmt -w them):"; echo "$$unformatted"; exit 1; fi

# The engine and the per-flow stages run under the race detector; the rest
# (parsers, sources, sinks) runs plain to keep the suite short on 2 cores.
test: lint
	$(GO) test -race -count=1 ./pipeline/... ./stages/flow/...
	$(GO) test -count=1 -timeout 20m $(PKGS)

# Whole-pipeline figures on a synthetic capture (cached in $TMPDIR/pktpipe-bench,
# ~1.7 GB at 2M packets); each measurement in its own process. BENCH_FLAGS
# passes more, e.g. BENCH_FLAGS='-count 3 -json' or '-workers 1'.
bench: build
	$(GO) run ./bench/cmd/benchrun -packets $(BENCH_PACKETS) $(BENCH_FLAGS)

# The figure the README quotes: the bare gopacket decode loop (one goroutine)
# against pktpipe's engine with no analyzer and the whole pipeline, every
# analyzer on (features included), both into a file sink with --workers 2;
# medians of 3, and tshark once for the record.
bench-compare: build
	$(GO) run ./bench/cmd/benchrun -packets $(BENCH_PACKETS) -compare -tshark -count 3 -workers 2 -analyzers all,features $(BENCH_FLAGS)

# User-space instructions of one pipeline run (every analyzer, features,
# --workers 2) on a synthetic capture of INSN_PACKETS packets, counted by
# valgrind's cachegrind (apt-get install valgrind): they hardly move with the
# machine's load, so a change's cost or gain shows where CPU time does not.
INSN_PACKETS ?= 300000
bench-instructions:
	$(GO) build -o bin/pktpipe-symbols ./cmd/pktpipe
	$(GO) run ./bench/cmd/benchrun -packets $(INSN_PACKETS) -modes pcapgo-read >/dev/null
	bench/instructions.sh bin/pktpipe-symbols $${TMPDIR:-/tmp}/pktpipe-bench/synth-seed1-n$(INSN_PACKETS).pcap $(INSN_PACKETS)

# --shard on the full bench capture (make test runs it on a 200k-packet one):
# the union of N = 1, 2, 3, 5 shards' events equals one run's.
shard-check:
	$(GO) run ./bench/cmd/benchrun -packets $(BENCH_PACKETS) -modes pcapgo-read >/dev/null
	PKTPIPE_SHARD_BENCH=$${TMPDIR:-/tmp}/pktpipe-bench/synth-seed1-n$(BENCH_PACKETS).pcap \
	  $(GO) test -count=1 -timeout 60m -run Bench -v ./test/shards/

# Short fuzz runs of every fuzz target (FUZZTIME each); CI does not run these.
FUZZTIME ?= 30s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

# Re-creates the committed bpf2go output (needs clang); a normal build does not.
generate:
	$(GO) generate ./bpf/...

clean:
	rm -rf bin

# Installation (DESTDIR for staging, PREFIX for the tree). The unit goes to
# SYSTEMDUNITDIR with ExecStart pointing at $(PREFIX)/bin; the example
# config to the doc dir and /etc/pktpipe (the live config is never touched).
PREFIX         ?= /usr/local
DESTDIR        ?=
SYSCONFDIR     ?= /etc
SYSTEMDUNITDIR ?= /etc/systemd/system
.PHONY: install man

# pktpipe(1) from the binary's own --help (deploy/genman; no extra tools).
man: build
	$(GO) run ./deploy/genman $(BIN) > bin/pktpipe.1

install: build man
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/pktpipe
	install -D -m 0644 bin/pktpipe.1 $(DESTDIR)$(PREFIX)/share/man/man1/pktpipe.1
	install -D -m 0644 deploy/pktpipe.yaml.example $(DESTDIR)$(PREFIX)/share/doc/pktpipe/pktpipe.yaml.example
	install -D -m 0644 docs/operations.md $(DESTDIR)$(PREFIX)/share/doc/pktpipe/operations.md
	install -D -m 0644 deploy/pktpipe.yaml.example $(DESTDIR)$(SYSCONFDIR)/pktpipe/pktpipe.yaml.example
	install -d -m 0755 $(DESTDIR)$(SYSTEMDUNITDIR)
	sed 's|/usr/local/bin/pktpipe|$(PREFIX)/bin/pktpipe|; s|/etc/pktpipe/|$(SYSCONFDIR)/pktpipe/|' deploy/pktpipe.service > $(DESTDIR)$(SYSTEMDUNITDIR)/pktpipe.service
	chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/pktpipe.service

-include test/kafka/kafka.mk
