# Shared by bench/router.sh and bench/dns.sh; sourced from the repository
# root. lib_setup NAME makes WORK (a temporary directory removed on exit),
# stops every pid in PIDS on exit (TERM, then KILL after 10 s) and sets BIN
# to GEOCDN_BIN or a freshly built bench/out/bin/geocdn.

log() { printf '%s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

cleanup() {
	local pid i
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		for ((i = 0; i < 100; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$WORK"
}

lib_setup() {
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/geocdn-$1-bench.XXXXXX")
	PIDS=()
	trap cleanup EXIT
	trap 'exit 130' INT TERM
	BIN=${GEOCDN_BIN:-}
	if [[ -z $BIN ]]; then
		mkdir -p bench/out/bin
		BIN=$PWD/bench/out/bin/geocdn
		log "building $BIN"
		go build -o "$BIN" ./cmd/geocdn
	fi
}
