#!/usr/bin/env bash
# DNS answers per second from `geocdn router --dns`, on one core, with
# EDNS Client Subnet on every query, measured by dnsperf (Debian's dnsperf
# package, installed here if missing).
#
# Starts `geocdn dev` (an origin and 7 edges, one process) on ports the
# kernel picks, and a separate `geocdn router --dns 127.0.0.1:0` pinned to
# CPU 1 with GOMAXPROCS=1; dnsperf runs on CPU 0. The queries
# (benchtool dnsqueries) ask for cdn.test with ECS: half in the test
# database's IPv4 cities, 30% anywhere in IPv4, 20% in its IPv6 cities.
# Prints each run's answers/s and the router's CPU per answer. Every
# process it starts is stopped by its PID on exit; all traffic stays on
# 127.0.0.1.
#
# Environment (defaults in brackets):
#   GEOCDN_BIN      binary to use [builds bench/out/bin/geocdn]
#   BENCH_RUNS      runs [3]
#   BENCH_SECONDS   length of each run, seconds [10]
set -euo pipefail
shopt -s inherit_errexit

cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
RUNS=${BENCH_RUNS:-3}
SECONDS_PER_RUN=${BENCH_SECONDS:-10}

if ! command -v dnsperf >/dev/null || ! command -v dig >/dev/null; then
	log "installing dnsperf and dig from Debian's packages"
	SUDO=()
	[[ $(id -u) -eq 0 ]] || SUDO=(sudo)
	"${SUDO[@]}" apt-get install -y -q dnsperf bind9-dnsutils >/dev/null
fi

lib_setup dns
go build -o "$WORK/benchtool" ./bench/benchtool

# ready_field FILE KEY: the value of a top-level "KEY": "..." in a ready file.
ready_field() { sed -n 's/^  "'"$2"'": "\(.*\)",\{0,1\}$/\1/p' "$1" | head -1; }

# wait_file F: until F exists and is not empty, at most 60 s.
wait_file() {
	local i
	for ((i = 0; i < 600; i++)); do
		[[ -s $1 ]] && return 0
		sleep 0.1
	done
	return 1
}

log "starting geocdn dev"
"$BIN" dev --base-port 0 --data "$WORK/dev" --ready-file "$WORK/dev.json" >"$WORK/dev.log" 2>&1 &
PIDS+=($!)
wait_file "$WORK/dev.json" || { log "dev cluster did not start; see its log:"; cat "$WORK/dev.log" >&2; exit 1; }
ORIGIN=$(sed -n '/"origin"/,/}/s/^ *"http": "\(.*\)",\{0,1\}$/\1/p' "$WORK/dev.json" | head -1)
TOKEN=$(ready_field "$WORK/dev.json" token_file)
[[ -n $ORIGIN && -n $TOKEN ]] || { log "no origin or token file in $WORK/dev.json"; exit 1; }

GOMAXPROCS=1 taskset -c 1 "$BIN" --log-level warn router --http - --origin-admin "http://$ORIGIN" \
	--token-file "$TOKEN" --geoip testdata/geoip-test.mmdb --dns 127.0.0.1:0 --dns-zone cdn.test \
	--probe-interval 500ms --membership-interval 1s --ready-file "$WORK/router.json" >"$WORK/router.log" 2>&1 &
RPID=$!
PIDS+=("$RPID")
wait_file "$WORK/router.json" || { log "router did not start; see its log:"; cat "$WORK/router.log" >&2; exit 1; }
DNS=$(ready_field "$WORK/router.json" dns)
PORT=${DNS##*:}

"$WORK/benchtool" dnsqueries -name cdn.test -out "$WORK/queries.bin"
# Until an edge is answerable (membership and first probes): at most 30 s.
for ((i = 0; i < 150; i++)); do
	dig +short +time=1 +tries=1 -p "$PORT" @127.0.0.1 cdn.test A 2>/dev/null | grep -q . && break
	sleep 0.2
done
dig +short +time=1 +tries=1 -p "$PORT" @127.0.0.1 cdn.test A | grep -q . || { log "router answers no edge"; cat "$WORK/router.log" >&2; exit 1; }

TCK=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$RPID/stat"; }
log "router on CPU 1 (GOMAXPROCS=1), dnsperf on CPU 0; $RUNS runs of ${SECONDS_PER_RUN}s"
printf '| run | answers/s | answered | lost | router CPU s | answers per router CPU-second |\n|---:|---:|---:|---:|---:|---:|\n'
for ((r = 1; r <= RUNS; r++)); do
	c0=$(cpu)
	out=$(timeout $((SECONDS_PER_RUN + 60)) taskset -c 0 dnsperf -B -d "$WORK/queries.bin" -s 127.0.0.1 -p "$PORT" \
		-l "$SECONDS_PER_RUN" -c 4 -q 200 -T 1 2>&1)
	c1=$(cpu)
	qps=$(awk '/Queries per second/ {printf "%.0f", $4}' <<<"$out")
	done_=$(awk '/Queries completed/ {print $3}' <<<"$out")
	lost=$(awk '/Queries lost/ {print $3}' <<<"$out")
	secs=$(awk -v d=$((c1 - c0)) -v t="$TCK" 'BEGIN {printf "%.2f", d / t}')
	per=$(awk -v n="$done_" -v s="$secs" 'BEGIN {if (s > 0) printf "%.0f", n / s; else print "-"}')
	printf '| %d | %s | %s | %s | %s | %s |\n' "$r" "$qps" "$done_" "$lost" "$secs" "$per"
done
