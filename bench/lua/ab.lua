-- One request shape for a whole wrk run, every answer's status counted.
-- Environment: BENCH_TOKEN (bearer token), BENCH_METHOD (GET), BENCH_PATH (/),
-- BENCH_BODY (a JSON body; "%s" in it becomes a fresh request_id every request),
-- BENCH_NONCE (makes request_ids unique across runs), BENCH_CLOSE=1 (send
-- "Connection: close": a new connection for every request), BENCH_IDS (a file
-- name prefix: each thread writes the action_id of every 2xx answer that has
-- one to <prefix><thread number>, one a line).
-- done() prints one line, BENCH_JSON {...}, that bench/load.py reads.
local token = os.getenv("BENCH_TOKEN") or "dev-token-bench"
local method = os.getenv("BENCH_METHOD") or "GET"
local path = os.getenv("BENCH_PATH") or "/"
local body_fmt = os.getenv("BENCH_BODY")
local nonce = os.getenv("BENCH_NONCE") or "n"
local close = os.getenv("BENCH_CLOSE") == "1"
local ids_prefix = os.getenv("BENCH_IDS")

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
local ids = nil

-- per thread (each wrk thread has its own Lua state); read back in done()
statuses = {}

function request()
  if not body_fmt then
    fixed = fixed or wrk.format(method, path, headers)
    return fixed
  end
  counter = counter + 1
  local request_id = string.format("%s-%d-%d", nonce, tid, counter)
  return wrk.format(method, path, headers, string.format(body_fmt, request_id))
end

function response(status, _headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if ids_prefix and status >= 200 and status < 300 and body then
    local id = body:match('"action_id":%s*"([^"]+)"')
    if id then
      ids = ids or io.open(ids_prefix .. tid, "a")
      ids:write(id, "\n")
    end
  end
end

function done(summary, latency, _requests)
  local all = {}
  for _, thread in ipairs(threads) do
    for key, n in pairs(thread:get("statuses") or {}) do all[key] = (all[key] or 0) + n end
  end
  local parts = {}
  for key, n in pairs(all) do table.insert(parts, string.format('"%s":%d', key, n)) end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"statuses":{%s},"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, table.concat(parts, ","), e.connect, e.read, e.write, e.timeout))
end
