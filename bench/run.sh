#!/usr/bin/env bash
# geocdn benchmarks (`make bench`): HTTP hits of a geocdn edge next to a plain
# Go server, nginx's proxy_cache and Apache Traffic Server, driven by wrk;
# push replication next to a raw quic-go stream; purges over the simulated
# WAN; anti-entropy, snapshot catch-up, restart and memory of an edge at a
# million objects, and the scrubber's effect on hits; the edge over TLS
# (HTTP/1.1, HTTP/2, HTTP/3, handshakes) next to nginx. Raw outputs go to
# bench/out/<timestamp>/ (and bench/out/latest); the tables are printed at
# the end and saved as results.md there. See bench/README.md for what each
# column means.
#
# Environment (defaults in brackets):
#   BENCH_ONLY        http, push, purge, pull, resync, loadtest, origin or tls: run that part only [all]
#   BENCH_RUNS        measured runs per (server, size), interleaved [3]
#   BENCH_DURATION    wrk -d of each run [10s]
#   BENCH_THREADS     wrk -t [2]
#   BENCH_CONNS       wrk -c [64]
#   BENCH_COUNT       URLs (objects) per size [1000]
#   BENCH_PORT_BASE   first of 23 loopback ports used (7 to 12: etcd; 13 to 16: the pull-through edge; 17 to 22: the TLS part) [18100]
#   BENCH_TMP         tmpfs for content, nginx and ATS caches and the origin's data [/dev/shm]
#   BENCH_EDGE_DATA   directory on disk for the geocdn edge's store [/var/tmp]
#   BENCH_PUSH_ROUNDS iterations of BenchmarkPush [3]
#   BENCH_PUSH_TMP    directory for the push benchmark's data [$TMPDIR or /tmp]
#   BENCH_PURGE_TMP   directory for the purge benchmark's nodes' data [$TMPDIR or /tmp]
#   BENCH_RESYNC_TMP  directory (on disk) for the resync part's origin and edge data [$TMPDIR or /tmp]
#   BENCH_RESYNC_OBJECTS objects on the origin and the edge in the resync part [1000000]
#   BENCH_SCRUB_ROUNDS interleaved rounds (scrubber on, off) per hit size [5]
#   BENCH_EDGE_FLAGS  extra flags for the geocdn edge [none]
#   BENCH_STRACE      0 skips the sendfile check of the 1 MiB case [1]
#   BENCH_PROFILE     0 skips the hot-path profiles (edgeprof, ServeHitTCP) [1]
#   BENCH_LOADTEST_ROUNDS interleaved rounds (geocdn loadtest, wrk) of the loadtest part [3]
#   BENCH_ORIGIN_TMP  directory (on disk) for the origin part's data [$TMPDIR or /tmp]
#   BENCH_BASELINE    commit whose single origin is measured beside this one [77896ff]
#   BENCH_WRITES      publishes, and purges, per origin case [20000]
#   BENCH_FAILOVER_KILLS leader kills of the failover benchmark [20]
#   BENCH_TLS_RUNS    measured runs of each TLS case, interleaved [3]
#   BENCH_TLS_DURATION length of each TLS run, whole seconds with an s (h2load -D, h3load, handshakes) [10s]
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
GO=${GO:-go}
ONLY=${BENCH_ONLY:-}
RUNS=${BENCH_RUNS:-3}
DURATION=${BENCH_DURATION:-10s}
THREADS=${BENCH_THREADS:-2}
CONNS=${BENCH_CONNS:-64}
COUNT=${BENCH_COUNT:-1000}
PORT=${BENCH_PORT_BASE:-18100}
TMPBASE=${BENCH_TMP:-/dev/shm}
# The edge's store is a disk store: it lives on a disk filesystem, and the
# page cache holds the hot set as it would in production (the warm-up reads
# every object first).
EDGE_BASE=${BENCH_EDGE_DATA:-/var/tmp}
PUSH_ROUNDS=${BENCH_PUSH_ROUNDS:-3}
PUSH_TMP=${BENCH_PUSH_TMP:-${TMPDIR:-/tmp}}
PURGE_TMP=${BENCH_PURGE_TMP:-${TMPDIR:-/tmp}}
RESYNC_TMP=${BENCH_RESYNC_TMP:-${TMPDIR:-/tmp}}
RESYNC_OBJECTS=${BENCH_RESYNC_OBJECTS:-1000000}
SCRUB_ROUNDS=${BENCH_SCRUB_ROUNDS:-5}
STRACE=${BENCH_STRACE:-1}
# Extra flags for the geocdn edge, e.g. a hot tier that holds the whole hot
# set in RAM as the map server and nginx's tmpfs cache do.
EDGE_FLAGS=${BENCH_EDGE_FLAGS:-}
PROFILE=${BENCH_PROFILE:-1}

MAP_PORT=$PORT
NGINX_PORT=$((PORT + 1))
ORIGIN_PORT=$((PORT + 2)) # TCP admin API and UDP QUIC
EDGE_PORT=$((PORT + 3))
EDGE_ADMIN_PORT=$((PORT + 4))
# PORT + 5: edgeprof's edge (profile_hot_path)
ATS_PORT=$((PORT + 6))
# PORT + 7 to PORT + 12: etcd (the origin part)
# The same objects pulled through a second origin and edge from a second
# map server that sends Cache-Control, so that they stay fresh.
PULL_MAP_PORT=$((PORT + 13))
PULL_ORIGIN_PORT=$((PORT + 14))
PULL_EDGE_PORT=$((PORT + 15))
PULL_EDGE_ADMIN_PORT=$((PORT + 16))

SIZES=(1k 64k 1m)
SERVERS=(gomap nginx ats geocdn geocdnpull)

STAMP=$(date +%Y%m%d-%H%M%S)
OUT=$ROOT/bench/out/$STAMP
BIN=$ROOT/bench/out/bin
mkdir -p "$OUT" "$BIN"
ln -sfn "$STAMP" "$ROOT/bench/out/latest"

log() { printf '%s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Every process this script starts is recorded here and stopped by PID.
PIDS=()
WORK=""
EDGE_WORK=""

# stop_pid PID [SIGNAL]: signal PID, give it 15 s, then SIGKILL; reap it.
stop_pid() {
	local pid=$1 sig=${2:-TERM} i
	if kill -0 "$pid" 2>/dev/null; then
		kill "-$sig" "$pid" 2>/dev/null || true
		for ((i = 0; i < 150; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "pid $pid ignored SIG$sig for 15 s; killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	wait "$pid" 2>/dev/null || true
	local kept=() p
	for p in "${PIDS[@]}"; do
		[[ $p == "$pid" ]] || kept+=("$p")
	done
	PIDS=("${kept[@]}")
}

cleanup() {
	local rc=$? i
	trap - EXIT INT TERM
	remove_policy
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		stop_pid "${PIDS[i]}"
	done
	if [[ -n $WORK && -d $WORK ]]; then
		rm -rf "$WORK"
	fi
	if [[ -n $EDGE_WORK && -d $EDGE_WORK ]]; then
		rm -rf "$EDGE_WORK"
	fi
	if ((rc != 0)); then
		log "benchmark failed (exit $rc); raw outputs in $OUT"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# need_ports PORT...: stops the run unless every port is free.
need_ports() {
	local p
	for p in "$@"; do
		port_free "$p" || { log "port $p is in use; set BENCH_PORT_BASE"; exit 1; }
	done
}

# make_work [PART]: fresh WORK and EDGE_WORK directories for the run, or
# for a part of it (tls), with the edge store's filesystem noted in
# machine.txt.
make_work() {
	local part=${1:+-$1}
	WORK=$(mktemp -d "$TMPBASE/geocdn-bench$part.XXXXXX")
	chmod 755 "$WORK"
	EDGE_WORK=$(mktemp -d "$EDGE_BASE/geocdn-bench$part-edge.XXXXXX")
	echo "geocdn edge store${1:+ ($1 part)}: $(df -T "$EDGE_WORK" | awk 'NR == 2 {print $2 " on " $1}')" >>"$OUT/machine.txt"
}

# ---------------------------------------------------------------- tools
# Debian starts a package's service when it installs it: nginx on port 80,
# trafficserver on 8080, which `make run` uses. A policy-rc.d that refuses
# every start, in place only while apt-get runs (and only if the machine
# has none), installs them stopped; cleanup removes it if we are cut short.
POLICY_RC=/usr/sbin/policy-rc.d
POLICY_MADE=0
SUDO=()

install_pkgs() {
	if [[ $(id -u) -ne 0 ]]; then
		command -v sudo >/dev/null || { log "need root or sudo to apt-get install $*"; exit 1; }
		SUDO=(sudo)
	fi
	log "installing $* from Debian's packages (their services left stopped)"
	if [[ ! -e $POLICY_RC ]]; then
		printf '#!/bin/sh\n# geocdn bench/run.sh: no service starts while it installs packages\nexit 101\n' |
			"${SUDO[@]}" tee "$POLICY_RC" >/dev/null && "${SUDO[@]}" chmod 755 "$POLICY_RC" && POLICY_MADE=1
	fi
	local rc=0
	"${SUDO[@]}" apt-get install -y "$@" >"$OUT/apt.log" 2>&1 ||
		{ "${SUDO[@]}" apt-get update >>"$OUT/apt.log" 2>&1 &&
			"${SUDO[@]}" apt-get install -y "$@" >>"$OUT/apt.log" 2>&1; } || rc=$?
	remove_policy
	return "$rc"
}

remove_policy() {
	if ((POLICY_MADE)); then
		"${SUDO[@]}" rm -f "$POLICY_RC"
		POLICY_MADE=0
	fi
}

log "building"
$GO build -o "$ROOT/bin/geocdn" ./cmd/geocdn
$GO build -o "$BIN/mapserver" ./bench/mapserver
$GO build -o "$BIN/benchtool" ./bench/benchtool
$GO build -o "$BIN/edgeprof" ./bench/edgeprof
GEOCDN=$ROOT/bin/geocdn
TOOL=$BIN/benchtool

{
	echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "commit: $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
	echo "cpu: $(nproc) × $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
	echo "kernel: $(uname -r)"
	echo "go: $($GO version)"
} >"$OUT/machine.txt"

# start_nginx NAME UPSTREAM_PORT SERVER_LINES: nginx proxy_cache in front
# of 127.0.0.1:UPSTREAM_PORT, cache and temp files in $WORK/NAME, master in
# the foreground, with SERVER_LINES (listen and the like) in its server
# block; its config and logs go to $OUT/NAME.*. Sets NGINX_PID.
start_nginx() {
	local name=$1 upstream=$2 server_lines=$3
	local ng=$WORK/$name user_line=""
	mkdir -p "$ng/cache" "$ng/tmp"
	if [[ $(id -u) -eq 0 ]]; then
		# Workers drop to nobody; they write the cache and temp files.
		user_line="user nobody nogroup;"
		chown -R nobody:nogroup "$ng/cache" "$ng/tmp"
	fi
	cat >"$ng/nginx.conf" <<EOF
$user_line
worker_processes 2;
daemon off;
master_process on;
pid $ng/nginx.pid;
error_log $ng/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush off;
    tcp_nodelay on;
    keepalive_timeout 120s;
    keepalive_requests 1000000;
    open_file_cache max=10000 inactive=120s;
    open_file_cache_valid 120s;
    client_body_temp_path $ng/tmp/body;
    proxy_temp_path $ng/tmp/proxy;
    fastcgi_temp_path $ng/tmp/fastcgi;
    uwsgi_temp_path $ng/tmp/uwsgi;
    scgi_temp_path $ng/tmp/scgi;
    proxy_cache_path $ng/cache levels=1:2 keys_zone=bench:32m max_size=8g inactive=1d use_temp_path=off;
    upstream origin {
        server 127.0.0.1:$upstream;
        keepalive 16;
    }
    server {
$server_lines
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache bench;
            proxy_cache_valid 200 1d;
            proxy_cache_lock on;
            add_header X-Cache-Status \$upstream_cache_status;
        }
    }
}
EOF
	"$NGINX" -t -p "$ng/" -c "$ng/nginx.conf" -e "$ng/error.log" >"$OUT/$name-t.log" 2>&1 ||
		{ cat "$OUT/$name-t.log" >&2; exit 1; }
	cp "$ng/nginx.conf" "$OUT/$name.conf"
	"$NGINX" -p "$ng/" -c "$ng/nginx.conf" -e "$ng/error.log" >"$OUT/$name.log" 2>&1 &
	NGINX_PID=$!
	PIDS+=($!)
}

# ---------------------------------------------------------------- HTTP
run_http() {
	local missing=()
	command -v wrk >/dev/null || missing+=(wrk)
	command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
	command -v traffic_server >/dev/null || missing+=(trafficserver)
	if ((${#missing[@]})); then
		install_pkgs "${missing[@]}"
	fi
	local NGINX
	NGINX=$(command -v nginx || echo /usr/sbin/nginx)
	{
		echo "wrk: $(wrk -v 2>&1 | head -1)"
		echo "nginx: $("$NGINX" -v 2>&1)"
		echo "trafficserver: $(traffic_server -V 2>/dev/null | head -1)"
	} >>"$OUT/machine.txt"

	need_ports $MAP_PORT $NGINX_PORT $ORIGIN_PORT $EDGE_PORT $EDGE_ADMIN_PORT $ATS_PORT \
		$PULL_MAP_PORT $PULL_ORIGIN_PORT $PULL_EDGE_PORT $PULL_EDGE_ADMIN_PORT
	make_work
	local content=$WORK/content
	log "generating $COUNT objects of each size in $content"
	"$TOOL" gen -dir "$content" -count "$COUNT"

	# (a) the plain Go server, also the origin of nginx and ATS
	"$BIN/mapserver" -addr "127.0.0.1:$MAP_PORT" -content "$content" >"$OUT/mapserver.log" 2>&1 &
	PIDS+=($!)
	"$TOOL" wait -url "http://127.0.0.1:$MAP_PORT/1k/00000.bin" -timeout 60s

	# (b) nginx proxy_cache, cache on tmpfs; master in the foreground
	start_nginx nginx "$MAP_PORT" "        listen 127.0.0.1:$NGINX_PORT;"

	# (b2) Apache Traffic Server, cache on tmpfs; traffic_server in the foreground
	start_ats

	# (c) geocdn: an origin and one edge, separate processes, certificates
	# issued by the nodes themselves from a development CA.
	"$GEOCDN" ca init --dir "$WORK/ca" >/dev/null
	head -c 24 /dev/urandom | base64 >"$WORK/token"
	"$GEOCDN" --log-level warn origin --data "$WORK/origin" \
		--http "127.0.0.1:$ORIGIN_PORT" --quic "127.0.0.1:$ORIGIN_PORT" \
		--ca "$WORK/ca" --token-file "$WORK/token" --publish-timeout 2m \
		>"$OUT/geocdn-origin.log" 2>&1 &
	PIDS+=($!)
	"$GEOCDN" --log-level warn edge --id bench --region local --lat 0 --lon 0 \
		--origin "127.0.0.1:$ORIGIN_PORT" --http "127.0.0.1:$EDGE_PORT" \
		--admin "127.0.0.1:$EDGE_ADMIN_PORT" --data "$EDGE_WORK/edge" --ca "$WORK/ca" \
		--drain-delay 0s $EDGE_FLAGS >"$OUT/geocdn-edge.log" 2>&1 &
	PIDS+=($!)
	local edge_pid=$!
	"$TOOL" wait -url "http://127.0.0.1:$EDGE_ADMIN_PORT/healthz" -timeout 60s
	log "publishing $((COUNT * ${#SIZES[@]})) objects to geocdn with w=all"
	"$TOOL" publish -origin "http://127.0.0.1:$ORIGIN_PORT" -token-file "$WORK/token" \
		-dir "$content" -count "$COUNT" -w all | tee "$OUT/publish.txt" >&2

	# (d) geocdn pulling the same objects through: a second origin whose
	# default namespace is pull-only from a second map server, which says
	# every object is fresh for a day; its own edge, pulled objects only.
	"$BIN/mapserver" -addr "127.0.0.1:$PULL_MAP_PORT" -content "$content" \
		-cache-control "public, max-age=86400" >"$OUT/mapserver-pull.log" 2>&1 &
	PIDS+=($!)
	"$TOOL" wait -url "http://127.0.0.1:$PULL_MAP_PORT/1k/00000.bin" -timeout 60s
	"$GEOCDN" --log-level warn origin --data "$WORK/origin-pull" \
		--http "127.0.0.1:$PULL_ORIGIN_PORT" --quic "127.0.0.1:$PULL_ORIGIN_PORT" \
		--ca "$WORK/ca" --token-file "$WORK/token" \
		--upstream "default=http://127.0.0.1:$PULL_MAP_PORT" --upstream-mode default=pull \
		>"$OUT/geocdn-origin-pull.log" 2>&1 &
	PIDS+=($!)
	"$GEOCDN" --log-level warn edge --id bench-pull --region local --lat 0 --lon 0 \
		--origin "127.0.0.1:$PULL_ORIGIN_PORT" --http "127.0.0.1:$PULL_EDGE_PORT" \
		--admin "127.0.0.1:$PULL_EDGE_ADMIN_PORT" --data "$EDGE_WORK/edge-pull" --ca "$WORK/ca" \
		--drain-delay 0s $EDGE_FLAGS >"$OUT/geocdn-edge-pull.log" 2>&1 &
	PIDS+=($!)
	"$TOOL" wait -url "http://127.0.0.1:$PULL_EDGE_ADMIN_PORT/healthz" -timeout 60s

	declare -A url=(
		[gomap]="http://127.0.0.1:$MAP_PORT"
		[nginx]="http://127.0.0.1:$NGINX_PORT"
		[ats]="http://127.0.0.1:$ATS_PORT"
		[geocdn]="http://127.0.0.1:$EDGE_PORT"
		[geocdnpull]="http://127.0.0.1:$PULL_EDGE_PORT"
	)
	log "warming: every object twice through every server, bytes checked, hits checked"
	{
		"$TOOL" warm -base "${url[gomap]}" -dir "$content" -count "$COUNT"
		"$TOOL" warm -base "${url[nginx]}" -dir "$content" -count "$COUNT" -header X-Cache-Status -want HIT
		"$TOOL" warm -base "${url[ats]}" -dir "$content" -count "$COUNT" -header X-Cache -want HIT
		"$TOOL" warm -base "${url[geocdn]}" -dir "$content" -count "$COUNT" -header X-Cache -want HIT
		"$TOOL" warm -base "${url[geocdnpull]}" -dir "$content" -count "$COUNT" -header X-Cache -want HIT
	} | tee "$OUT/warm.txt" >&2

	# wrk RUN SERVER SIZE FILE DURATION: one bounded wrk run.
	run_wrk() {
		local server=$1 size=$2 file=$3 dur=$4
		BENCH_PREFIX="/$size/" BENCH_COUNT=$COUNT timeout 120 \
			wrk "-t$THREADS" "-c$CONNS" "-d$dur" --latency --timeout 5s \
			-s "$ROOT/bench/urls.lua" "${url[$server]}" >"$file" 2>&1
	}
	log "wrk warm-up: 3 s per (server, size)"
	local size server r k
	for size in "${SIZES[@]}"; do
		for server in "${SERVERS[@]}"; do
			run_wrk "$server" "$size" "$OUT/warmup-$server-$size.txt" 3s
		done
	done

	metrics() { curl -fsS "http://127.0.0.1:$1/metrics" | grep -E '^geocdn_edge_(hits|misses)_total' || true; }
	metrics "$EDGE_ADMIN_PORT" >"$OUT/geocdn-metrics-before.txt"
	metrics "$PULL_EDGE_ADMIN_PORT" >"$OUT/geocdnpull-metrics-before.txt"

	local total=$((RUNS * ${#SIZES[@]} * ${#SERVERS[@]}))
	log "measuring: $total wrk runs of $DURATION (-t$THREADS -c$CONNS), interleaved"
	local n=0
	for ((r = 1; r <= RUNS; r++)); do
		for size in "${SIZES[@]}"; do
			# Rotate the order per run so no server always follows the same one.
			for ((k = 0; k < ${#SERVERS[@]}; k++)); do
				server=${SERVERS[$(((k + r - 1) % ${#SERVERS[@]}))]}
				n=$((n + 1))
				local f="$OUT/wrk-$server-$size-r$r.txt"
				run_wrk "$server" "$size" "$f" "$DURATION"
				log "  [$n/$total] run $r $size $server: $(grep -E '^Requests/sec' "$f" | awk '{print $2}') req/s," \
					"p99 $(awk '$1 == "99%" {print $2}' "$f")"
			done
		done
	done
	metrics "$EDGE_ADMIN_PORT" >"$OUT/geocdn-metrics-after.txt"
	metrics "$PULL_EDGE_ADMIN_PORT" >"$OUT/geocdnpull-metrics-after.txt"
	local miss_before miss_after e
	for e in geocdn geocdnpull; do
		miss_before=$(awk '/^geocdn_edge_misses_total/ {print $2}' "$OUT/$e-metrics-before.txt")
		miss_after=$(awk '/^geocdn_edge_misses_total/ {print $2}' "$OUT/$e-metrics-after.txt")
		if [[ $miss_before != "$miss_after" ]]; then
			log "WARNING: the $e edge counted misses during the measurement ($miss_before → $miss_after)"
		fi
		if ! grep -q . "$OUT/$e-metrics-after.txt"; then
			log "WARNING: could not read the $e edge's hit and miss counters"
		fi
	done

	# The 1 MiB case must leave the edge by sendfile from its disk store:
	# count the edge's syscalls over a short, separate run (strace slows the
	# process, so never during a measurement).
	if [[ $STRACE == 1 ]] && command -v strace >/dev/null; then
		strace -f -c -e trace=sendfile,write,writev,read -o "$OUT/strace-edge-1m.txt" -p "$edge_pid" 2>"$OUT/strace.log" &
		PIDS+=($!)
		local strace_pid=$!
		sleep 1
		BENCH_PREFIX=/1m/ BENCH_COUNT=$COUNT timeout 60 wrk -t1 -c4 -d2s -s "$ROOT/bench/urls.lua" \
			"${url[geocdn]}" >"$OUT/wrk-strace-1m.txt" 2>&1 || true
		stop_pid "$strace_pid" INT
		local reqs sf
		reqs=$(awk -F'[ =]' '/^RESULT/ {print $3}' "$OUT/wrk-strace-1m.txt")
		sf=$(awk '$NF == "sendfile" {print $4}' "$OUT/strace-edge-1m.txt" 2>/dev/null || true)
		echo "geocdn edge, 1 MiB objects under strace: ${reqs:-?} requests, ${sf:-0} sendfile calls" |
			tee "$OUT/sendfile.txt" >&2
	fi

	log "stopping the HTTP servers"
	for ((k = ${#PIDS[@]} - 1; k >= 0; k--)); do
		stop_pid "${PIDS[k]}"
	done
	cp "$WORK/ats/log/diags.log" "$OUT/ats/diags.log" 2>/dev/null || true

	if [[ $PROFILE == 1 ]]; then
		profile_hot_path "$content"
	fi
	rm -rf "$WORK" "$EDGE_WORK"
	WORK=""
	EDGE_WORK=""

	"$TOOL" table -dir "$OUT" >"$OUT/http-table.md"
}

# start_ats: Apache Traffic Server as a reverse-proxy cache in front of the
# map server, everything (config, cache, logs, runtime files) under
# $WORK/ats via a runroot; traffic_server itself in the foreground, without
# traffic_manager, recorded in PIDS.
start_ats() {
	local ats=$WORK/ats user=trafficserver
	mkdir -p "$ats/etc" "$ats/cache" "$ats/log" "$ats/run" "$ats/var"
	if [[ $(id -u) -ne 0 ]]; then
		user="#-1" # not root: keep the current user
	elif ! id trafficserver >/dev/null 2>&1; then
		user=nobody
	fi
	cat >"$ats/runroot.yaml" <<EOF
prefix: /usr
exec_prefix: /usr
bindir: /usr/bin
sbindir: /usr/sbin
includedir: /usr/include
libdir: /usr/lib/trafficserver
libexecdir: /usr/lib/trafficserver/modules
sysconfdir: $ats/etc
datadir: $ats/var
localstatedir: $ats/var
runtimedir: $ats/run
logdir: $ats/log
cachedir: $ats/cache
EOF
	# Two event threads (2 cores, shared with wrk) plus the accept thread;
	# no Via or client-IP headers; every 200 cached for a day although the
	# map server sends no Cache-Control or Last-Modified (required_headers 0
	# and a one-day heuristic lifetime); a RAM cache that holds the whole
	# hot set (1.1 GB) in front of the 2 GB cache file on tmpfs; a write
	# backlog of 256 MiB instead of 5 MiB, or ATS drops some of the 1 MiB
	# objects' cache writes while the warm-up fetches 8 at a time.
	cat >"$ats/etc/records.config" <<EOF
CONFIG proxy.config.admin.user_id STRING $user
CONFIG proxy.config.crash_log_helper STRING NULL
CONFIG proxy.config.exec_thread.autoconfig INT 0
CONFIG proxy.config.exec_thread.limit INT 2
CONFIG proxy.config.exec_thread.affinity INT 0
CONFIG proxy.config.accept_threads INT 1
CONFIG proxy.config.net.connections_throttle INT 10000
CONFIG proxy.config.http.server_ports STRING $ATS_PORT:ip-in=127.0.0.1
CONFIG proxy.config.reverse_proxy.enabled INT 1
CONFIG proxy.config.url_remap.remap_required INT 1
CONFIG proxy.config.http.insert_request_via_str INT 0
CONFIG proxy.config.http.insert_response_via_str INT 0
CONFIG proxy.config.http.insert_client_ip INT 0
CONFIG proxy.config.http.insert_squid_x_forwarded_for INT 0
CONFIG proxy.config.http.keep_alive_enabled_in INT 1
CONFIG proxy.config.http.keep_alive_enabled_out INT 1
CONFIG proxy.config.http.keep_alive_no_activity_timeout_in INT 120
CONFIG proxy.config.http.cache.http INT 1
CONFIG proxy.config.http.cache.required_headers INT 0
CONFIG proxy.config.http.cache.heuristic_min_lifetime INT 86400
CONFIG proxy.config.http.cache.heuristic_max_lifetime INT 86400
CONFIG proxy.config.http.cache.when_to_revalidate INT 0
CONFIG proxy.config.cache.ram_cache.size INT 1610612736
CONFIG proxy.config.cache.ram_cache_cutoff INT 4194304
CONFIG proxy.config.cache.agg_write_backlog INT 268435456
CONFIG proxy.config.log.logging_enabled INT 0
CONFIG proxy.config.diags.debug.enabled INT 0
CONFIG proxy.config.body_factory.template_sets_dir STRING /etc/trafficserver/body_factory
EOF
	echo "$ats/cache 2G" >"$ats/etc/storage.config"
	# header_rewrite marks answers served fresh from the cache, for the
	# warm-up's hit check.
	echo "map http://127.0.0.1:$ATS_PORT/ http://127.0.0.1:$MAP_PORT/ @plugin=header_rewrite.so @pparam=$ats/etc/hit.conf" \
		>"$ats/etc/remap.config"
	cat >"$ats/etc/hit.conf" <<'EOF'
cond %{SEND_RESPONSE_HDR_HOOK} [AND]
cond %{CACHE} =hit-fresh
    set-header X-Cache HIT
EOF
	cat >"$ats/etc/ip_allow.yaml" <<'EOF'
ip_allow:
  - apply: in
    ip_addrs: 127.0.0.1
    action: allow
  - apply: out
    ip_addrs: 127.0.0.1
    action: allow
EOF
	local f
	for f in plugin.config cache.config hosting.config parent.config volume.config splitdns.config \
		socks.config ssl_multicert.config logging.yaml sni.yaml strategies.yaml; do
		: >"$ats/etc/$f"
	done
	if [[ $(id -u) -eq 0 ]]; then
		# traffic_server drops to $user, which writes the cache, logs and runtime files.
		chown -R "$user:" "$ats"
	fi
	mkdir -p "$OUT/ats"
	cp "$ats/runroot.yaml" "$ats/etc/records.config" "$ats/etc/storage.config" \
		"$ats/etc/remap.config" "$ats/etc/hit.conf" "$ats/etc/ip_allow.yaml" "$OUT/ats/"
	traffic_server --run-root="$ats/runroot.yaml" >"$OUT/ats.log" 2>&1 &
	PIDS+=($!)
	"$TOOL" wait -url "http://127.0.0.1:$ATS_PORT/1k/00000.bin" -timeout 60s ||
		{ cat "$OUT/ats.log" "$ats/log/diags.log" >&2 2>/dev/null; exit 1; }
}

# profile_hot_path CONTENT: CPU profiles of the edge under the same wrk load
# (in-process origin and edge, wrk outside the profile), the top functions
# of each, and BenchmarkServeHitTCP: the edge's handler on a real socket
# next to a plain handler, with write system calls per response.
profile_hot_path() {
	local content=$1 prof=$OUT/profile size
	mkdir -p "$prof"
	log "profiling the edge's hit path under wrk (edgeprof, $DURATION per size)"
	timeout 600 "$BIN/edgeprof" -content "$content" -out "$prof" -addr "127.0.0.1:$((PORT + 5))" \
		-duration "$DURATION" -wrk "-t$THREADS -c$CONNS" -lua "$ROOT/bench/urls.lua" \
		>"$prof/edgeprof.log" 2>&1 || { cat "$prof/edgeprof.log" >&2; exit 1; }
	for size in "${SIZES[@]}"; do
		$GO tool pprof -top -nodecount 25 "$BIN/edgeprof" "$prof/cpu-$size.prof" >"$prof/top-$size.txt" 2>/dev/null
		$GO tool pprof -top -cum -nodecount 40 "$BIN/edgeprof" "$prof/cpu-$size.prof" >"$prof/top-cum-$size.txt" 2>/dev/null
	done
	log "BenchmarkServeHitTCP"
	timeout 300 $GO test -run '^$' -bench '^BenchmarkServeHitTCP$' -benchtime 1s -count 3 ./edge/ \
		>"$prof/servehit-tcp.txt" 2>&1 || { cat "$prof/servehit-tcp.txt" >&2; exit 1; }
	"$TOOL" tcptable -in "$prof/servehit-tcp.txt" >"$OUT/servehit-table.md"
}

# ---------------------------------------------------------------- push
run_push() {
	log "push benchmark: 256 MiB, $PUSH_ROUNDS rounds (data under $PUSH_TMP)"
	TMPDIR=$PUSH_TMP timeout 900 $GO test -run '^$' -bench '^BenchmarkPush$' -benchtime "${PUSH_ROUNDS}x" \
		-timeout 14m -v ./bench/ >"$OUT/push.txt" 2>&1 ||
		{ cat "$OUT/push.txt" >&2; exit 1; }
	"$TOOL" pushtable -in "$OUT/push.txt" >"$OUT/push-table.md"
}

# ---------------------------------------------------------------- purge
# BenchmarkPurgeWAN runs in-process: an origin and 20 edges on a simulated
# WAN (no sockets, no ports), in real time; it closes every node itself and
# the test binary's timeout bounds it. Its tables are the lines of its
# output that start with "**" or "|".
run_purge() {
	log "purge benchmark: origin in Washington DC, 20 edges over the simulated WAN (data under $PURGE_TMP)"
	wan_bench BenchmarkPurgeWAN purge
}

# wan_bench BENCHMARK NAME: runs BENCHMARK of internal/cluster once into
# $OUT/NAME.txt and keeps its tables in $OUT/NAME-table.md.
wan_bench() {
	local bench=$1 name=$2
	TMPDIR=$PURGE_TMP timeout 600 $GO test -run '^$' -bench "^$bench\$" -benchtime 1x \
		-timeout 9m -v ./internal/cluster/ >"$OUT/$name.txt" 2>&1 ||
		{ cat "$OUT/$name.txt" >&2; exit 1; }
	awk '/^\*\*/ { if (n++) print ""; print; print ""; next } /^\|/ { print }' \
		"$OUT/$name.txt" >"$OUT/$name-table.md"
	grep -q '^|' "$OUT/$name-table.md" || { log "no table in $OUT/$name.txt"; exit 1; }
}

# ---------------------------------------------------------------- pull
# BenchmarkPullWAN runs in-process like BenchmarkPurgeWAN: an origin as the
# shield, an edge in each region over the simulated WAN, and an upstream
# website on a loopback port the kernel picks; miss latency through the
# shield, and the upstream's requests per 1,000 client requests under a
# Zipf workload.
run_pull() {
	log "pull-through benchmark: miss latency through the shield and origin offload over the simulated WAN (about 1 minute)"
	wan_bench BenchmarkPullWAN pull
}

# ---------------------------------------------------------------- resync
# Issue #10's figures, all in-process over loopback (no port of the
# script's is used): BenchmarkResync1M (origin/resync_bench_test.go) builds
# a catalog of $RESYNC_OBJECTS objects and times a snapshot catch-up, edge
# restarts and resyncs with 0, 100 and 10,000 differences;
# BenchmarkStoreOpen1M (edge/resync_bench_test.go) the edge's index in
# memory; BenchmarkScrubHits (internal/cluster/scrub_bench_test.go) hits
# with the scrubber on and off. Each closes what it started; the test
# binaries' timeouts bound them.
run_resync() {
	log "resync benchmark: $RESYNC_OBJECTS objects, snapshot catch-up, restarts, resyncs (data under $RESYNC_TMP; 1 to 3 minutes)"
	TMPDIR=$RESYNC_TMP timeout 1200 $GO test -run '^$' -bench '^BenchmarkResync1M$' -benchtime 1x \
		-timeout 19m -v ./origin/ -args -geocdn.resyncobjects="$RESYNC_OBJECTS" >"$OUT/resync.txt" 2>&1 ||
		{ cat "$OUT/resync.txt" >&2; exit 1; }
	log "edge store benchmark: $RESYNC_OBJECTS objects opened from disk (about 1 minute)"
	TMPDIR=$RESYNC_TMP timeout 900 $GO test -run '^$' -bench '^BenchmarkStoreOpen1M$' -benchtime 1x \
		-timeout 14m -v ./edge/ -args -geocdn.storeobjects="$RESYNC_OBJECTS" >"$OUT/store.txt" 2>&1 ||
		{ cat "$OUT/store.txt" >&2; exit 1; }
	log "scrub benchmark: hits with the scrubber on and off, $SCRUB_ROUNDS rounds per size (about 2 minutes)"
	TMPDIR=$RESYNC_TMP timeout 900 $GO test -run '^$' -bench '^BenchmarkScrubHits$' -benchtime 1x \
		-timeout 14m -v ./internal/cluster/ -args -geocdn.scrubrounds="$SCRUB_ROUNDS" >"$OUT/scrub.txt" 2>&1 ||
		{ cat "$OUT/scrub.txt" >&2; exit 1; }
	"$TOOL" resynctable -resync "$OUT/resync.txt" -store "$OUT/store.txt" -scrub "$OUT/scrub.txt" \
		-objects "$RESYNC_OBJECTS" >"$OUT/resync-table.md"
}

# ---------------------------------------------------------------- loadtest
# The load generator's own throughput (issue #11): geocdn loadtest and wrk
# side by side, each alone on CPU 1 (the load tester with GOMAXPROCS=1),
# the same closed loop of $CONNS connections against one edge of a
# `geocdn dev` pinned to CPU 0, one 1 KiB object; interleaved rounds, the
# ratio of the medians. The dev cluster binds ports the kernel picks and
# reports them in its ready file; it is stopped by its PID.
run_loadtest() {
	command -v wrk >/dev/null || install_pkgs wrk
	command -v taskset >/dev/null || install_pkgs util-linux
	local dir=$OUT/loadtest rounds=${BENCH_LOADTEST_ROUNDS:-3} r
	mkdir -p "$dir"
	log "loadtest benchmark: geocdn loadtest against wrk, $rounds rounds of $DURATION, -c$CONNS on one core"
	taskset -c 0 "$GEOCDN" --log-level warn dev --base-port 0 --data "$dir/dev" --ready-file "$dir/ready.json" \
		>"$dir/dev.log" 2>&1 &
	PIDS+=($!)
	local dev_pid=$!
	for ((r = 0; r < 1200; r++)); do
		[[ -f $dir/ready.json ]] && break
		kill -0 "$dev_pid" 2>/dev/null || { cat "$dir/dev.log" >&2; exit 1; }
		sleep 0.1
	done
	local edge
	edge=$(sed -n '/"id": "lhr"/,/}/s/.*"http": "\([^"]*\)".*/\1/p' "$dir/ready.json")
	[[ -n $edge ]] || { log "no edge lhr in $dir/ready.json"; exit 1; }
	local scn="$dir/scenario.yaml"
	sed "s/concurrency: 64/concurrency: $CONNS/; s/duration: 10s/duration: $DURATION/" \
		"$ROOT/bench/loadtest-vs-wrk.yaml" >"$scn"
	: >"$dir/rates.txt"
	for ((r = 1; r <= rounds; r++)); do
		taskset -c 1 env GOMAXPROCS=1 "$GEOCDN" --log-level warn loadtest --cluster "$dir/ready.json" \
			--out "$dir/lt-r$r" "$scn" >"$dir/lt-r$r.txt" 2>&1 || { cat "$dir/lt-r$r.txt" >&2; exit 1; }
		taskset -c 1 wrk -t1 "-c$CONNS" "-d$DURATION" "http://$edge/loadtest/loadtest-vs-wrk/0" \
			>"$dir/wrk-r$r.txt" 2>&1 || { cat "$dir/wrk-r$r.txt" >&2; exit 1; }
		echo "$r $(awk '/^Requests\/sec:/ {print $2}' "$dir/wrk-r$r.txt") $(awk '/^  overall/ {gsub(",", "", $4); print $4}' "$dir/lt-r$r.txt")" >>"$dir/rates.txt"
	done
	stop_pid "$dev_pid"
	awk -v conns="$CONNS" -v dur="$DURATION" '
		{ w[NR] = $2; l[NR] = $3; rows = rows sprintf("| %d | %.0f | %.0f | %.2f× |\n", $1, $2, $3, $3 / $2) }
		function median(a, n,   i, j, t) {
			for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
			return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
		}
		END {
			print "| round | wrk req/s | geocdn loadtest req/s | ratio |"
			print "|---:|---:|---:|---:|"
			printf "%s", rows
			mw = median(w, NR); ml = median(l, NR)
			printf "| median | %.0f | %.0f | **%.2f×** (goal ≥ 0.80×) |\n", mw, ml, ml / mw
		}' "$dir/rates.txt" >"$OUT/loadtest-table.md"
}

# ---------------------------------------------------------------- origin
# Issue #12's figures: publishes (1 KiB) and purges per second from
# 64 concurrent clients (benchtool writes), against one
# origin and the leader of three, group commit on and off, every origin
# durable on disk ($ORIGIN_TMP), as separate processes on ports the kernel
# picks (read from their ready files) and stopped by their PIDs. "Before
# the cluster" is the origin of $BENCH_BASELINE (the last single-origin
# commit), built from `git archive`. Then TestFailoverTimes
# (cmd/geocdn/failover_test.go) kills the leader of three
# $FAILOVER_KILLS times.
ORIGIN_TMP=${BENCH_ORIGIN_TMP:-${TMPDIR:-/tmp}}
BASELINE=${BENCH_BASELINE:-77896ff}
WRITES=${BENCH_WRITES:-20000}
FAILOVER_KILLS=${BENCH_FAILOVER_KILLS:-20}

# start_origin BIN NAME DIR ARGS...: starts an origin writing its ready
# file to DIR/NAME.ready.json and waits for it.
start_origin() {
	local bin=$1 name=$2 dir=$3 i
	shift 3
	"$bin" --log-level warn origin --data "$dir/$name" --ca "$dir/ca" --token-file "$dir/token" \
		--http 127.0.0.1:0 --quic 127.0.0.1:0 --ready-file "$dir/$name.ready.json" "$@" >"$dir/$name.log" 2>&1 &
	PIDS+=($!)
	echo $! >"$dir/$name.pid"
	for ((i = 0; i < 600; i++)); do
		[[ -s $dir/$name.ready.json ]] && return 0
		kill -0 "$(cat "$dir/$name.pid")" 2>/dev/null || { cat "$dir/$name.log" >&2; exit 1; }
		sleep 0.1
	done
	log "origin $name did not become ready"
	exit 1
}

ready_field() { sed -n "s/.*\"$2\": \"\([^\"]*\)\".*/\1/p" "$1" | head -1; }

# origin_case LABEL ORIGINS GROUPCOMMIT BIN: one row of the table.
origin_case() {
	local label=$1 n=$2 gc=$3 bin=$4 dir i url pub pur
	dir=$(mktemp -d "$ORIGIN_TMP/geocdn-bench-origin.XXXXXX")
	"$GEOCDN" ca init --dir "$dir/ca" >/dev/null
	head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/token"
	local extra=()
	[[ $gc != off ]] || extra+=(--group-commit=false)
	if ((n == 1)); then
		start_origin "$bin" o1 "$dir" "${extra[@]}"
	else
		start_origin "$bin" o1 "$dir" --id o1 --raft 127.0.0.1:0 "${extra[@]}"
		url="http://$(ready_field "$dir/o1.ready.json" http)"
		for ((i = 2; i <= n; i++)); do
			start_origin "$bin" "o$i" "$dir" --id "o$i" --raft 127.0.0.1:0 --join "$url" "${extra[@]}"
		done
		for ((i = 0; i < 300; i++)); do
			[[ $("$GEOCDN" status --json --origin "$url" --token-file "$dir/token" 2>/dev/null | grep -o '"applied_index"' | wc -l) -eq $n ]] && break
			sleep 0.1
		done
	fi
	url="http://$(ready_field "$dir/o1.ready.json" http)"
	pub=$("$TOOL" writes -origin "$url" -token-file "$dir/token" -op publish -count "$WRITES" -clients 64 | sed 's/.*"per_second":\([0-9.]*\).*/\1/')
	pur=$("$TOOL" writes -origin "$url" -token-file "$dir/token" -op purge -count "$WRITES" -clients 64 | sed 's/.*"per_second":\([0-9.]*\).*/\1/')
	for ((i = 1; i <= n; i++)); do
		stop_pid "$(cat "$dir/o$i.pid")"
	done
	rm -rf "$dir"
	printf '| %s | %d | %s | %.0f | %.0f |\n' "$label" "$n" "$gc" "$pub" "$pur" >>"$OUT/origin-table.md"
}

# etcd_case: the same client and the same 64 concurrent HTTP/1.1 writers
# against a three-member etcd (Debian's etcd-server, raft with a fsynced
# WAL), through its JSON gateway: puts of 1 KiB beside the publishes, and
# of 16 bytes beside the purges, which are commands of about that size.
# etcd cannot report ports it bound, so its six are $PORT + 7 to + 12.
etcd_case() {
	local dir i cluster="" pids=() pub pur
	command -v etcd >/dev/null || install_pkgs etcd-server || { log "etcd-server not installed; no etcd row"; return 0; }
	for ((i = 0; i < 6; i++)); do
		port_free $((PORT + 7 + i)) || { log "port $((PORT + 7 + i)) in use; no etcd row"; return 0; }
	done
	dir=$(mktemp -d "$ORIGIN_TMP/geocdn-bench-etcd.XXXXXX")
	for ((i = 0; i < 3; i++)); do
		cluster+="${cluster:+,}e$i=http://127.0.0.1:$((PORT + 10 + i))"
	done
	for ((i = 0; i < 3; i++)); do
		etcd --name "e$i" --data-dir "$dir/e$i" --log-level warn \
			--listen-client-urls "http://127.0.0.1:$((PORT + 7 + i))" --advertise-client-urls "http://127.0.0.1:$((PORT + 7 + i))" \
			--listen-peer-urls "http://127.0.0.1:$((PORT + 10 + i))" --initial-advertise-peer-urls "http://127.0.0.1:$((PORT + 10 + i))" \
			--initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token geocdn-bench >"$dir/e$i.log" 2>&1 &
		pids+=($!)
		PIDS+=($!)
	done
	local url=http://127.0.0.1:$((PORT + 7)) leader=""
	for ((i = 0; i < 300; i++)); do
		leader=$(ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$((PORT + 7)),127.0.0.1:$((PORT + 8)),127.0.0.1:$((PORT + 9))" endpoint status -w table 2>/dev/null |
			awk -F'|' '$6 ~ /true/ {gsub(/ /, "", $2); print $2}' | head -1) || true
		[[ -n $leader ]] && break
		sleep 0.1
	done
	[[ -n $leader ]] && url="http://$leader"
	pub=$("$TOOL" writes -origin "$url" -op etcd-put -size 1024 -count "$WRITES" -clients 64 | sed 's/.*"per_second":\([0-9.]*\).*/\1/')
	pur=$("$TOOL" writes -origin "$url" -op etcd-put -size 16 -prefix bench/small -count "$WRITES" -clients 64 | sed 's/.*"per_second":\([0-9.]*\).*/\1/')
	for i in "${pids[@]}"; do
		stop_pid "$i"
	done
	rm -rf "$dir"
	printf '| etcd %s, puts to the leader (1 KiB; 16 B) | 3 | raft | %.0f | %.0f |\n' "$(etcd --version | awk '/etcd Version/{print $3}')" "$pub" "$pur" >>"$OUT/origin-table.md"
}

run_origin() {
	local base=$OUT/baseline
	log "origin benchmark: $WRITES publishes and purges, 64 clients, against 1 and 3 origins (data under $ORIGIN_TMP)"
	mkdir -p "$base/src"
	git -C "$ROOT" archive "$BASELINE" | tar -x -C "$base/src"
	(cd "$base/src" && $GO build -o "$base/geocdn" ./cmd/geocdn)
	{
		echo "| origin | origins | group commit | publishes/s | purges/s |"
		echo "|---|---:|---|---:|---:|"
	} >"$OUT/origin-table.md"
	origin_case "before the cluster ($BASELINE)" 1 "-" "$base/geocdn"
	origin_case "this commit" 1 off "$GEOCDN"
	origin_case "this commit" 1 on "$GEOCDN"
	origin_case "this commit" 3 off "$GEOCDN"
	origin_case "this commit" 3 on "$GEOCDN"
	etcd_case
	log "failover benchmark: the leader of 3 origins killed $FAILOVER_KILLS times"
	timeout 1500 $GO test -run "^TestFailoverTimes$" -timeout 24m -v ./cmd/geocdn/ \
		-args -geocdn.failoverkills="$FAILOVER_KILLS" >"$OUT/failover.txt" 2>&1 || { cat "$OUT/failover.txt" >&2; exit 1; }
	grep '^|' "$OUT/failover.txt" >"$OUT/failover-table.md" || { log "no table in $OUT/failover.txt"; exit 1; }
}

# ---------------------------------------------------------------- TLS
# The edge over TLS next to nginx, both serving the same certificate (from
# the benchmark's CA) with the same cipher: TLS 1.3 with
# TLS_AES_128_GCM_SHA256, Go's choice on a CPU with AES instructions, to
# which nginx is pinned. h2load hits of 1 KiB and 64 KiB over HTTP/1.1 and
# HTTP/2; the edge's HTTP/3 next to its HTTP/2 from one Go client
# (benchtool h3load); TLS handshakes per second, full and resumed
# (benchtool handshakes). Runs are interleaved as in run_http; every
# process is stopped by its PID.
TLS_RUNS=${BENCH_TLS_RUNS:-3}
TLS_DURATION=${BENCH_TLS_DURATION:-10s}
TLS_SIZES=(1k 64k)
TLS_NGINX_PORT=$((PORT + 17))
TLS_MAP_PORT=$((PORT + 18))
TLS_ORIGIN_PORT=$((PORT + 19))     # TCP admin API and UDP QUIC
TLS_EDGE_PORT=$((PORT + 20))
TLS_EDGE_ADMIN_PORT=$((PORT + 21))
TLS_EDGE_HTTPS_PORT=$((PORT + 22)) # TCP HTTP/1.1 and HTTP/2, UDP HTTP/3
# HTTP/2 streams per connection, for h2load -m and h3load -streams.
TLS_STREAMS=10

run_tls() {
	command -v h2load >/dev/null || install_pkgs nghttp2-client
	command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || install_pkgs nginx
	local NGINX
	NGINX=$(command -v nginx || echo /usr/sbin/nginx)
	{
		echo "h2load: $(h2load --version 2>&1 | head -1)"
		echo "nginx (TLS part): $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), $("$NGINX" -V 2>&1 | grep -o 'built with OpenSSL [^ ]*')"
	} >>"$OUT/machine.txt"
	# A whole number of seconds bounds each run at that plus a minute;
	# anything else at 10 minutes.
	local bound=600
	if [[ $TLS_DURATION =~ ^([0-9]+)s$ ]]; then
		bound=$((BASH_REMATCH[1] + 60))
	fi

	need_ports $TLS_NGINX_PORT $TLS_MAP_PORT $TLS_ORIGIN_PORT $TLS_EDGE_PORT $TLS_EDGE_ADMIN_PORT $TLS_EDGE_HTTPS_PORT
	make_work tls
	local content=$WORK/content
	log "TLS: generating $COUNT objects of 1 KiB and 64 KiB in $content"
	"$TOOL" gen -dir "$content" -count "$COUNT"
	# gen writes every size; only these two are measured, and the map
	# server would load the 1 MiB ones into memory too.
	rm -rf "$content/1m"

	# One CA, one web certificate (ECDSA P-256, for 127.0.0.1 and
	# localhost) for both servers.
	"$GEOCDN" ca init --dir "$WORK/ca" >/dev/null
	head -c 24 /dev/urandom | base64 >"$WORK/token"
	"$TOOL" webcert -ca "$WORK/ca" -out "$WORK/web" -hosts 127.0.0.1,localhost >/dev/null
	local crt=$WORK/web/web-bench.crt key=$WORK/web/web-bench.key cacrt=$WORK/ca/ca.crt

	# (a) nginx proxy_cache over TLS in front of a map server, as in run_http
	"$BIN/mapserver" -addr "127.0.0.1:$TLS_MAP_PORT" -content "$content" >"$OUT/tls-mapserver.log" 2>&1 &
	PIDS+=($!)
	"$TOOL" wait -url "http://127.0.0.1:$TLS_MAP_PORT/1k/00000.bin" -timeout 60s
	local ver listen h2line=""
	# `http2 on` came with nginx 1.25.1; before it, a flag of listen.
	ver=$("$NGINX" -v 2>&1 | sed 's|.*/||')
	if [[ $(printf '%s\n' 1.25.1 "$ver" | sort -V | head -1) == 1.25.1 ]]; then
		listen="listen 127.0.0.1:$TLS_NGINX_PORT ssl;"
		h2line="http2 on;"
	else
		listen="listen 127.0.0.1:$TLS_NGINX_PORT ssl http2;"
	fi
	start_nginx nginx-tls "$TLS_MAP_PORT" "        $listen
        $h2line
        ssl_certificate $crt;
        ssl_certificate_key $key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;
        ssl_session_cache shared:SSL:10m;
        ssl_session_tickets on;"
	local i
	for ((i = 0; i < 300; i++)); do
		port_free "$TLS_NGINX_PORT" || break
		kill -0 "$NGINX_PID" 2>/dev/null || { cat "$OUT/nginx-tls.log" "$WORK/nginx-tls/error.log" >&2; exit 1; }
		sleep 0.1
	done

	# (b) geocdn: an origin and one edge serving HTTPS and HTTP/3 with the
	# same certificate.
	"$GEOCDN" --log-level warn origin --data "$WORK/origin" \
		--http "127.0.0.1:$TLS_ORIGIN_PORT" --quic "127.0.0.1:$TLS_ORIGIN_PORT" \
		--ca "$WORK/ca" --token-file "$WORK/token" --publish-timeout 2m \
		>"$OUT/tls-geocdn-origin.log" 2>&1 &
	PIDS+=($!)
	"$GEOCDN" --log-level warn edge --id bench --region local --lat 0 --lon 0 \
		--origin "127.0.0.1:$TLS_ORIGIN_PORT" --http "127.0.0.1:$TLS_EDGE_PORT" \
		--admin "127.0.0.1:$TLS_EDGE_ADMIN_PORT" --data "$EDGE_WORK/edge" --ca "$WORK/ca" \
		--drain-delay 0s --https "127.0.0.1:$TLS_EDGE_HTTPS_PORT" --tls-cert "$crt" --tls-key "$key" \
		$EDGE_FLAGS >"$OUT/tls-geocdn-edge.log" 2>&1 &
	PIDS+=($!)
	"$TOOL" wait -url "http://127.0.0.1:$TLS_EDGE_ADMIN_PORT/healthz" -timeout 60s
	log "TLS: publishing $((COUNT * ${#TLS_SIZES[@]})) objects to geocdn with w=all"
	"$TOOL" publish -origin "http://127.0.0.1:$TLS_ORIGIN_PORT" -token-file "$WORK/token" \
		-dir "$content" -count "$COUNT" -sizes 1k,64k -w all | tee "$OUT/tls-publish.txt" >&2

	declare -A port=([nginx]=$TLS_NGINX_PORT [geocdn]=$TLS_EDGE_HTTPS_PORT)
	local server size
	for server in nginx geocdn; do
		for size in "${TLS_SIZES[@]}"; do
			for ((i = 0; i < COUNT; i++)); do
				printf 'https://127.0.0.1:%d/%s/%05d.bin\n' "${port[$server]}" "$size" "$i"
			done >"$OUT/tls-urls-$server-$size.txt"
		done
	done
	log "TLS: warming: every object twice over every protocol of each server, bytes checked, hits checked"
	local warm=("$TOOL" warmtls -ca "$cacrt" -dir "$content" -count "$COUNT" -sizes 1k,64k)
	{
		"${warm[@]}" -base "https://127.0.0.1:$TLS_NGINX_PORT" -proto h2 -header X-Cache-Status -want HIT
		"${warm[@]}" -base "https://127.0.0.1:$TLS_NGINX_PORT" -proto h1 -header X-Cache-Status -want HIT
		"${warm[@]}" -base "https://127.0.0.1:$TLS_EDGE_HTTPS_PORT" -proto h1 -header X-Cache -want HIT
		"${warm[@]}" -base "https://127.0.0.1:$TLS_EDGE_HTTPS_PORT" -proto h2 -header X-Cache -want HIT
		"${warm[@]}" -base "https://127.0.0.1:$TLS_EDGE_HTTPS_PORT" -proto h3 -header X-Cache -want HIT
	} | tee "$OUT/tls-warm.txt" >&2

	tls_metrics() { curl -fsS "http://127.0.0.1:$TLS_EDGE_ADMIN_PORT/metrics" | grep -E '^geocdn_edge_(hits|misses)_total' || true; }
	tls_metrics >"$OUT/tls-geocdn-metrics-before.txt"

	# Each run: h2load for every (size, protocol), both servers back to back
	# (order rotated per run); then h3load HTTP/2 and HTTP/3 per size (order
	# rotated); then handshakes, full and resumed, both servers.
	local servers=(nginx geocdn) protos=(h2 h3) r k n=0 f proto mode h2opt
	local total=$((TLS_RUNS * (${#TLS_SIZES[@]} * 6 + 4)))
	log "TLS: measuring: $total runs of $TLS_DURATION, interleaved"
	for ((r = 1; r <= TLS_RUNS; r++)); do
		for size in "${TLS_SIZES[@]}"; do
			for proto in h1 h2; do
				h2opt=(-m "$TLS_STREAMS")
				[[ $proto == h2 ]] || h2opt=(--h1)
				for ((k = 0; k < 2; k++)); do
					server=${servers[$(((k + r - 1) % 2))]}
					f=$OUT/h2load-$server-$size-$proto-r$r.txt
					n=$((n + 1))
					timeout "$bound" h2load -c "$CONNS" -t "$THREADS" -D "$TLS_DURATION" --warm-up-time 2s \
						"${h2opt[@]}" -i "$OUT/tls-urls-$server-$size.txt" >"$f" 2>&1 ||
						{ cat "$f" >&2; exit 1; }
					log "  [$n/$total] run $r $size $proto $server (h2load): $(awk '/^finished in/ {print $4}' "$f") req/s"
				done
			done
			for ((k = 0; k < 2; k++)); do
				proto=${protos[$(((k + r - 1) % 2))]}
				f=$OUT/h3load-$size-$proto-r$r.txt
				n=$((n + 1))
				timeout "$bound" "$TOOL" h3load -url-list "$OUT/tls-urls-geocdn-$size.txt" -proto "$proto" \
					-conns "$CONNS" -streams "$TLS_STREAMS" -duration "$TLS_DURATION" -warmup 2s -ca "$cacrt" \
					>"$f" 2>&1 || { cat "$f" >&2; exit 1; }
				log "  [$n/$total] run $r $size $proto geocdn (h3load): $(awk '/ req\/s/ {print $3}' "$f") req/s"
			done
		done
		for mode in full resumed; do
			for ((k = 0; k < 2; k++)); do
				server=${servers[$(((k + r - 1) % 2))]}
				f=$OUT/handshakes-$server-$mode-r$r.txt
				n=$((n + 1))
				timeout "$bound" "$TOOL" handshakes -addr "127.0.0.1:${port[$server]}" -ca "$cacrt" -mode "$mode" \
					-conns "$CONNS" -duration "$TLS_DURATION" >"$f" 2>&1 || { cat "$f" >&2; exit 1; }
				log "  [$n/$total] run $r $mode handshakes $server: $(awk '/ handshakes, / {sub(",", "", $3); print $3}' "$f")"
			done
		done
	done
	tls_metrics >"$OUT/tls-geocdn-metrics-after.txt"
	local miss_before miss_after
	miss_before=$(awk '/^geocdn_edge_misses_total/ {print $2}' "$OUT/tls-geocdn-metrics-before.txt")
	miss_after=$(awk '/^geocdn_edge_misses_total/ {print $2}' "$OUT/tls-geocdn-metrics-after.txt")
	if [[ $miss_before != "$miss_after" ]]; then
		log "WARNING: the geocdn edge counted misses during the TLS measurement ($miss_before → $miss_after)"
	fi
	grep -q . "$OUT/tls-geocdn-metrics-after.txt" || log "WARNING: could not read the geocdn edge's hit and miss counters"

	log "stopping the TLS servers"
	for ((k = ${#PIDS[@]} - 1; k >= 0; k--)); do
		stop_pid "${PIDS[k]}"
	done
	cp "$WORK/nginx-tls/error.log" "$OUT/nginx-tls-error.log" 2>/dev/null || true
	rm -rf "$WORK" "$EDGE_WORK"
	WORK=""
	EDGE_WORK=""

	"$TOOL" tlstable -dir "$OUT" >"$OUT/tls-table.md"
}

[[ -n $ONLY && $ONLY != http ]] || run_http
[[ -n $ONLY && $ONLY != push ]] || run_push
[[ -n $ONLY && $ONLY != purge ]] || run_purge
[[ -n $ONLY && $ONLY != pull ]] || run_pull
[[ -n $ONLY && $ONLY != resync ]] || run_resync
[[ -n $ONLY && $ONLY != loadtest ]] || run_loadtest
[[ -n $ONLY && $ONLY != origin ]] || run_origin
[[ -n $ONLY && $ONLY != tls ]] || run_tls

{
	echo "# geocdn benchmarks"
	echo
	sed 's/^/    /' "$OUT/machine.txt"
	if [[ -f $OUT/http-table.md ]]; then
		echo
		echo "## HTTP hits: wrk -t$THREADS -c$CONNS -d$DURATION, $COUNT URLs per size, medians of $RUNS interleaved runs"
		echo
		cat "$OUT/http-table.md"
		if [[ -f $OUT/sendfile.txt ]]; then
			echo
			cat "$OUT/sendfile.txt"
		fi
	fi
	if [[ -f $OUT/servehit-table.md ]]; then
		echo
		echo "## Edge hit path on a loopback socket (BenchmarkServeHitTCP, one connection, medians of 3)"
		echo
		cat "$OUT/servehit-table.md"
		echo
		echo "CPU profiles of the edge under wrk: bench/out/$STAMP/profile/ (top-<size>.txt, cpu-<size>.prof)"
	fi
	if [[ -f $OUT/tls-table.md ]]; then
		echo
		echo "## Over TLS: geocdn edge next to nginx (h2load -c$CONNS -t$THREADS -D $TLS_DURATION --warm-up-time 2s, HTTP/2 with -m $TLS_STREAMS; $COUNT URLs per size; $TLS_RUNS interleaved runs)"
		echo
		cat "$OUT/tls-table.md"
	fi
	if [[ -f $OUT/push-table.md ]]; then
		echo
		echo "## Push replication: one 256 MiB object to one edge, medians of $PUSH_ROUNDS interleaved rounds"
		echo
		cat "$OUT/push-table.md"
	fi
	if [[ -f $OUT/purge-table.md ]]; then
		echo
		echo "## Purges over the simulated WAN (BenchmarkPurgeWAN, one run, real time)"
		echo
		cat "$OUT/purge-table.md"
	fi
	if [[ -f $OUT/pull-table.md ]]; then
		echo
		echo "## Pull-through over the simulated WAN (BenchmarkPullWAN, one run, real time)"
		echo
		cat "$OUT/pull-table.md"
	fi
	if [[ -f $OUT/loadtest-table.md ]]; then
		echo
		echo "## geocdn loadtest next to wrk: closed loop, -c$CONNS, one core each, one 1 KiB object, $DURATION rounds"
		echo
		cat "$OUT/loadtest-table.md"
	fi
	if [[ -f $OUT/origin-table.md ]]; then
		echo
		echo "## Origin writes: $WRITES publishes (1 KiB) and purges, 64 concurrent clients, durable on disk"
		echo
		cat "$OUT/origin-table.md"
		echo
		echo "## Failover: the leader of 3 origins killed (SIGKILL) $FAILOVER_KILLS times under publishes"
		echo
		cat "$OUT/failover-table.md"
	fi
	if [[ -f $OUT/resync-table.md ]]; then
		echo
		echo "## Resync, snapshot catch-up, restart and memory at $RESYNC_OBJECTS objects; scrubbing beside hits (one run each)"
		echo
		cat "$OUT/resync-table.md"
	fi
} >"$OUT/results.md"
echo
cat "$OUT/results.md"
echo
log "raw outputs in bench/out/$STAMP"
