-- One request shape for a whole wrk run, every answer's status counted.
-- Environment: BENCH_TOKEN (bearer token), BENCH_METHOD (GET), BENCH_PATH (/),
-- BENCH_BODY (a JSON body; "%s" in it becomes a fresh request_id every request),
-- BENCH_NONCE (makes request_ids unique across runs), BENCH_CLOSE=1 (send
-- "Connection: close": a new connection for every request).
-- done() prints one line, BENCH_JSON {...}, that bench/load.py reads.
local token = os.getenv("BENCH_TOKEN") or "dev-token-bench"
local method = os.getenv("BENCH_METHOD") or "GET"
local path = os.getenv("BENCH_PATH") or "/"
local body_fmt = os.getenv("BENCH_BODY")
local nonce = os.getenv("BENCH_NONCE") or "n"
local close = os.getenv("BENCH_CLOSE") == "1"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

local headers = {["Authorization"] = "Bearer " .. token}
if close then headers["Connection"] = "close" end
if body_fmt then headers["Content-Type"] = "application/json" end
local fixed = nil -- the one request of a run without a body, built at first use
local counter = 0

-- per thread (each wrk thread has its own Lua state); read back in done()
s2xx, s3xx, s4xx, s5xx, sother = 0, 0, 0, 0, 0

function request()
  if not body_fmt then
    fixed = fixed or wrk.format(method, path, headers)
    return fixed
  end
  counter = counter + 1
  local request_id = string.format("%s-%d-%d", nonce, tid, counter)
  return wrk.format(method, path, headers, string.format(body_fmt, request_id))
end

function response(status, _headers, _body)
  if status >= 200 and status < 300 then s2xx = s2xx + 1
  elseif status >= 300 and status < 400 then s3xx = s3xx + 1
  elseif status >= 400 and status < 500 then s4xx = s4xx + 1
  elseif status >= 500 and status < 600 then s5xx = s5xx + 1
  else sother = sother + 1 end
end

function done(summary, latency, _requests)
  local c = {s2xx = 0, s3xx = 0, s4xx = 0, s5xx = 0, sother = 0}
  for _, thread in ipairs(threads) do
    for name, _ in pairs(c) do c[name] = c[name] + (thread:get(name) or 0) end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"2xx":%d,"3xx":%d,"4xx":%d,"5xx":%d,"other":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, c.s2xx, c.s3xx, c.s4xx, c.s5xx, c.sother,
    e.connect, e.read, e.write, e.timeout))
end
