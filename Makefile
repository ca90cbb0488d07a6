# geocdn — see README.md. `make run` starts a local cluster, `make test` runs
# the test suite (with the race detector), `make bench` the benchmarks.
GO      ?= go
PKGS    := ./...
BIN     := bin/geocdn

.PHONY: all build run test test-short vet fmt bench fuzz clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/geocdn

run: build
	./$(BIN) dev

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

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzReadFrame -fuzztime 60s ./internal/wire
	$(GO) test -run '^$$' -fuzz FuzzFromPath -fuzztime 30s ./internal/objkey
	$(GO) test -run '^$$' -fuzz FuzzScanHead -fuzztime 60s ./internal/h1

clean:
	rm -rf bin
