#!/usr/bin/env bash
# Redirects per second through `geocdn router` under wrk, on loopback.
#
# Starts `geocdn dev` (an origin and 7 edges, one process) and a separate
# `geocdn router` trusting 127.0.0.1, waits until every edge is routable,
# then runs wrk against the router: each request names a client with
# X-Forwarded-For, drawn at random from the test database's cities (IPv4
# and IPv6), and a key drawn from 4,096; wrk does not follow the 302s, so
# this measures the router alone. Two set-ups, interleaved run by run:
#
#   pinned   router on CPU 1 with GOMAXPROCS=1, wrk on CPU 0: one core
#   shared   both unpinned on every core, as run.sh measures the edge
#
# It prints each run and the medians. Every process it starts is stopped
# by its PID on exit, Ctrl-C included; all traffic stays on 127.0.0.1.
#
# Environment (defaults in brackets):
#   GEOCDN_BIN       binary to use [builds bench/out/bin/geocdn]
#   BENCH_RUNS       runs per set-up [3]
#   BENCH_DURATION   wrk -d of each run [10s]
#   BENCH_CONNS      wrk -c [64]
#   BENCH_PORT_BASE  dev cluster ports from here (+100 and +101 for the
#                    routers) [18500]
set -euo pipefail
shopt -s inherit_errexit

cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
RUNS=${BENCH_RUNS:-3}
DURATION=${BENCH_DURATION:-10s}
CONNS=${BENCH_CONNS:-64}
PORT=${BENCH_PORT_BASE:-18500}
ROUTER_PORT=$((PORT + 101))

command -v wrk >/dev/null || { log "wrk is missing: apt-get install -y wrk"; exit 1; }

lib_setup router
"$BIN" router --help >/dev/null 2>&1 || { log "$BIN has no router command"; exit 1; }

# wait_http URL: until it answers 200, at most 30 s.
wait_http() {
	local i
	for ((i = 0; i < 300; i++)); do
		[[ $(curl -s -o /dev/null -w '%{http_code}' "$1" || true) == 200 ]] && return 0
		sleep 0.1
	done
	log "$1 never answered 200"
	return 1
}

log "starting geocdn dev on 127.0.0.1:$PORT"
"$BIN" dev --base-port "$PORT" --data "$WORK/dev" >"$WORK/dev.log" 2>&1 &
PIDS+=($!)
for ((i = 0; i < 600; i++)); do
	[[ -s $WORK/dev/token ]] && grep -q "Ctrl-C stops" "$WORK/dev.log" && break
	sleep 0.1
done
[[ -s $WORK/dev/token ]] || { log "dev cluster did not start; see its log:"; cat "$WORK/dev.log" >&2; exit 1; }

cat >"$WORK/router.lua" <<'EOF'
-- One redirect request per call: a random test-database client, a random key.
local clients, requests = {}, {}
function init(args)
  for city = 0, 31 do
    for host = 1, 13, 4 do
      local v4
      if city < 16 then v4 = string.format("192.0.2.%d", 16 * city + host)
      else v4 = string.format("198.51.100.%d", 16 * (city - 16) + host) end
      clients[#clients + 1] = v4
      clients[#clients + 1] = string.format("2001:db8:%x::%x", city + 1, host)
    end
  end
  for i = 1, 4096 do
    local c = clients[(i % #clients) + 1]
    requests[i] = wrk.format("GET", string.format("/assets/%05d.js", i), { ["X-Forwarded-For"] = c })
  end
  math.randomseed(os.time())
end
function request() return requests[math.random(#requests)] end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
EOF

# run_once MODE: start a router, measure, stop it; prints "MODE rps p50 p99".
run_once() {
	local mode=$1 rpin=() wpin=() env=() pid out
	if [[ $mode == pinned ]]; then
		rpin=(taskset -c 1)
		wpin=(taskset -c 0)
		env=(GOMAXPROCS=1)
	fi
	env "${env[@]}" "${rpin[@]}" "$BIN" --log-level warn router --http "127.0.0.1:$ROUTER_PORT" \
		--origin-admin "http://127.0.0.1:$PORT" --token-file "$WORK/dev/token" \
		--geoip testdata/geoip-test.mmdb --trusted-proxies 127.0.0.1 \
		--default-location 50.11,8.68 >"$WORK/router-$mode.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	if ! wait_http "http://127.0.0.1:$ROUTER_PORT/healthz"; then
		cat "$WORK/router-$mode.log" >&2
		return 1
	fi
	# Every edge routable before measuring.
	for ((i = 0; i < 100; i++)); do
		curl -s "http://127.0.0.1:$ROUTER_PORT/metrics" | grep -q '^geocdn_router_edges_routable 7$' && break
		sleep 0.1
	done
	"${wpin[@]}" wrk -t1 -c"$CONNS" -d2s -s "$WORK/router.lua" "http://127.0.0.1:$ROUTER_PORT" >/dev/null
	out=$("${wpin[@]}" wrk -t1 -c"$CONNS" -d"$DURATION" -s "$WORK/router.lua" "http://127.0.0.1:$ROUTER_PORT" | grep '^RESULT')
	kill -TERM "$pid"
	wait "$pid" 2>/dev/null || true
	local kept=() p
	for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || kept+=("$p"); done
	PIDS=("${kept[@]}")
	awk -v mode="$mode" '{
		for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		if (v["errors"] > 0) { printf "%s errors=%d ", mode, v["errors"] > "/dev/stderr" }
		printf "%s %.0f %.2f %.2f\n", mode, v["requests"] / (v["duration_us"] / 1e6), v["p50_us"] / 1000, v["p99_us"] / 1000
	}' <<<"$out"
}

RESULTS=()
for ((r = 1; r <= RUNS; r++)); do
	for mode in pinned shared; do
		line=$(run_once "$mode") || { log "run $r ($mode) failed"; exit 1; }
		log "run $r: $line (redirects/s, p50 ms, p99 ms)"
		RESULTS+=("$line")
	done
done

# median FIELD MODE: the median of column FIELD of MODE's results.
median() {
	printf '%s\n' "${RESULTS[@]}" | awk -v m="$2" '$1 == m { print $'"$1"' }' | sort -g |
		awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

printf '\n| set-up | redirects/s (median of %d) | p50 ms | p99 ms | every run, redirects/s |\n|---|---|---|---|---|\n' "$RUNS"
for mode in pinned shared; do
	all=$(printf '%s\n' "${RESULTS[@]}" | awk -v m="$mode" '$1 == m { printf "%s%s", sep, $2; sep = ", " }')
	printf '| %s | %s | %s | %s | %s |\n' "$mode" "$(median 2 "$mode")" "$(median 3 "$mode")" "$(median 4 "$mode")" "$all"
done
