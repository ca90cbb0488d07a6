#!/usr/bin/env bash
# loadtest/run.sh: what `make loadtest` and `make soak` run.
#
#   loadtest/run.sh once SCENARIO [DURATION]
#       runs SCENARIO (a name from loadtest/ or a file) once, against the
#       `geocdn dev` whose ready file is $LOADTEST_CLUSTER (default
#       bin/dev.ready.json, which `make run` writes) if it is running, or
#       else against one it starts (`geocdn dev --processes`, every port
#       picked by the kernel) and stops when done.
#   loadtest/run.sh soak DURATION SCENARIO...
#       runs each SCENARIO over and over, all of them side by side, until
#       DURATION has passed, against a `geocdn dev --processes` it starts
#       (fault events need its control API).
#
# Reports go to $LOADTEST_OUT (default loadtest/out)/<scenario>-<time>/.
# Exit status: non-zero if any run failed its checks (corrupt or stale
# answers, an edge that did not converge, an acknowledged publish missing).
set -euo pipefail
cd "$(dirname "$0")/.."
GEOCDN=${GEOCDN:-bin/geocdn}
OUT=${LOADTEST_OUT:-loadtest/out}
READY=${LOADTEST_CLUSTER:-bin/dev.ready.json}
mkdir -p "$OUT"

log() { printf '%s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

DEV_PID=""
DEV_DIR=""
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ -n $DEV_PID ]] && kill -0 "$DEV_PID" 2>/dev/null; then
		kill -TERM "$DEV_PID" 2>/dev/null || true
		for _ in $(seq 300); do kill -0 "$DEV_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$DEV_PID" 2>/dev/null || true
		wait "$DEV_PID" 2>/dev/null || true
	fi
	[[ -n $DEV_DIR ]] && rm -rf "$DEV_DIR"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# running READY-FILE: is the dev cluster that wrote it still there?
running() {
	[[ -f $1 ]] || return 1
	local pid
	pid=$(sed -n 's/^  "pid": \([0-9]*\),*$/\1/p' "$1" | head -1)
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}

# start_dev: a dev cluster of separate processes, in a temporary directory.
start_dev() {
	DEV_DIR=$(mktemp -d "${TMPDIR:-/tmp}/geocdn-loadtest.XXXXXX")
	READY=$DEV_DIR/ready.json
	log "starting geocdn dev --processes (logs in $DEV_DIR/dev.log)"
	"$GEOCDN" dev --processes --base-port 0 --data "$DEV_DIR/data" --ready-file "$READY" >"$DEV_DIR/dev.log" 2>&1 &
	DEV_PID=$!
	for _ in $(seq 1200); do
		[[ -f $READY ]] && return 0
		kill -0 "$DEV_PID" 2>/dev/null || { cat "$DEV_DIR/dev.log" >&2; log "geocdn dev exited"; return 1; }
		sleep 0.1
	done
	log "geocdn dev not ready after 120 s"
	return 1
}

# run_one SCENARIO [DURATION]: one run, its reports in a directory of its own.
run_one() {
	local scn=$1 dur=${2:-} name dir
	name=$(basename "$scn" .yaml)
	dir=$OUT/$name-$(date +%Y%m%d-%H%M%S)-$RANDOM
	local args=(loadtest --cluster "$READY" --out "$dir")
	[[ -n $dur ]] && args+=(--duration "$dur")
	"$GEOCDN" "${args[@]}" "$scn"
}

case ${1:-} in
once)
	[[ $# -ge 2 ]] || { echo "usage: $0 once SCENARIO [DURATION]" >&2; exit 2; }
	if running "$READY"; then
		log "using the running geocdn dev of $READY"
	else
		start_dev
	fi
	run_one "$2" "${3:-}"
	;;
soak)
	[[ $# -ge 3 ]] || { echo "usage: $0 soak DURATION SCENARIO..." >&2; exit 2; }
	dur=$2
	shift 2
	start_dev
	secs=$(awk -v d="$dur" 'BEGIN { n = d + 0; u = substr(d, length(n "") + 1);
		print (u == "h" ? n * 3600 : u == "m" ? n * 60 : n) }')
	end=$(($(date +%s) + secs))
	log "soak: ${*} side by side until $(date -d "@$end" +%H:%M:%S)"
	pids=()
	for scn in "$@"; do
		(
			n=0 failed=0
			while (($(date +%s) < end)); do
				n=$((n + 1))
				run_one "$scn" >"$OUT/soak-$(basename "$scn" .yaml)-$n.txt" 2>&1 || failed=$((failed + 1))
			done
			log "soak: $scn: $n runs, $failed failed (reports in $OUT)"
			((failed == 0))
		) &
		pids+=($!)
	done
	rc=0
	for p in "${pids[@]}"; do wait "$p" || rc=1; done
	exit "$rc"
	;;
*)
	sed -n '2,16p' "$0" >&2
	exit 2
	;;
esac
