-- wrk script: spreads GETs uniformly at random over BENCH_COUNT URLs
-- BENCH_PREFIX00000.bin … and prints one machine-readable RESULT line
-- (latencies in microseconds) when wrk is done.
local prefix = os.getenv("BENCH_PREFIX") or "/1k/"
local count = tonumber(os.getenv("BENCH_COUNT") or "1000")
local requests = {}
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  for i = 0, count - 1 do
    requests[i + 1] = wrk.format("GET", string.format("%s%05d.bin", prefix, i))
  end
  math.randomseed(os.time() + 7919 * (tid or 0))
end

function request()
  return requests[math.random(count)]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%.0f duration_us=%.0f bytes=%.0f p50_us=%.0f p90_us=%.0f p99_us=%.0f max_us=%.0f " ..
    "err_connect=%.0f err_read=%.0f err_write=%.0f err_status=%.0f err_timeout=%.0f\n",
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
