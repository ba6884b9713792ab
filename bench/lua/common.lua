-- Shared by every scenario: the caller's token, and a machine-readable summary.
token = os.getenv("BENCH_TOKEN") or "dev-token-bench"
nonce = os.getenv("BENCH_NONCE") or "n"
wrk.headers["Authorization"] = "Bearer " .. token

local thread_count = 0
function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,' ..
    '"bad_status":%d,"socket_errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
