# geocdn — see README.md. `make run` starts a local cluster, `make test` runs
# the test suite (with the race detector), `make bench` the benchmarks.
GO      ?= go
PKGS    := ./...
BIN     := bin/geocdn

.PHONY: all build run test test-short vet fmt bench bench-dns fuzz clean loadtest soak

all: build

build:
	$(GO) build -o $(BIN) ./cmd/geocdn

# The dev cluster writes its ready file where `make loadtest` looks for it.
run: build
	./$(BIN) dev --ready-file bin/dev.ready.json

vet:
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

test: vet build
	$(GO) test -race -timeout 12m $(PKGS)

test-short:
	$(GO) test -short $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

# Benchmarks: not part of `make test`; they print tables.
bench: build
	./bench/run.sh

# DNS answers/s of `geocdn router --dns` on one core, with ECS (dnsperf).
bench-dns: build
	./bench/dns.sh

# Load tests: not part of `make test`. `make loadtest` runs global-zipf for
# 60 s against the cluster `make run` started, or one it starts and stops,
# and prints where the HTML report is; `make soak` runs edge-loss and
# deploy side by side for 30 minutes. Reports go to loadtest/out/.
loadtest: build
	./loadtest/run.sh once global-zipf 60s

soak: build
	./loadtest/run.sh soak 30m edge-loss deploy

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzReadFrame -fuzztime 60s ./internal/wire
	$(GO) test -run '^$$' -fuzz FuzzFromPath -fuzztime 30s ./internal/objkey
	$(GO) test -run '^$$' -fuzz FuzzScanHead -fuzztime 60s ./internal/h1
	$(GO) test -run '^$$' -fuzz FuzzParseHead -fuzztime 60s ./internal/h1c
	$(GO) test -run '^$$' -fuzz FuzzDNSQuery -fuzztime 60s ./router

clean:
	rm -rf bin
