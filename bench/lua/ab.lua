-- One request shape for a whole wrk run, every answer's status counted.
-- Environment: BENCH_TOKENS (a file, one bearer token a line: request i is
-- sent with token i mod N), BENCH_METHOD (GET), BENCH_PATH (/), BENCH_PATHS
-- (a file, one path a line, as many as the tokens: request i goes to path
-- i mod N with token i mod N, instead of BENCH_PATH), BENCH_BODY (a JSON body;
-- "%s" in it becomes a fresh request_id every request), BENCH_NONCE (makes
-- request_ids unique across runs), BENCH_CLOSE=1 (send "Connection: close": a
-- new connection for every request), BENCH_IDS (a file name prefix: each thread
-- writes the action_id of every 2xx answer that has one to <prefix><thread
-- number>, one a line).
-- Every request is built before the run (init): a whole request per token
-- without a body; with a body, the head per token, to which each request's
-- body (of one length: its request_id has a fixed width) is appended.
-- done() prints one line, BENCH_JSON {...}, that bench/load.py reads.
local method = os.getenv("BENCH_METHOD") or "GET"
local path = os.getenv("BENCH_PATH") or "/"
local body_fmt = os.getenv("BENCH_BODY")
local nonce = os.getenv("BENCH_NONCE") or "n"
local close = os.getenv("BENCH_CLOSE") == "1"
local ids_prefix = os.getenv("BENCH_IDS")

local function lines(file)
  local out = {}
  if file then
    for line in io.lines(file) do
      if line ~= "" then table.insert(out, line) end
    end
  end
  return out
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

local prebuilt = {} -- per token: the whole request, or its head (with a body)
local count = 0
local counter = 0
local ids = nil

local function request_id()
  return string.format("%s-%02d-%09d", nonce, tid, counter)
end

-- After wrk.init (which sets the Host header that wrk.format adds).
function init(_args)
  local tokens = lines(os.getenv("BENCH_TOKENS"))
  if #tokens == 0 then tokens = {"dev-token-bench"} end
  local paths = lines(os.getenv("BENCH_PATHS"))
  assert(#paths == 0 or #paths == #tokens, "BENCH_PATHS: one path per token")
  local sample = body_fmt and string.format(body_fmt, request_id())
  for i, token in ipairs(tokens) do
    local headers = {["Authorization"] = "Bearer " .. token}
    if close then headers["Connection"] = "close" end
    if body_fmt then headers["Content-Type"] = "application/json" end
    local whole = wrk.format(method, paths[i] or path, headers, sample)
    prebuilt[i] = sample and whole:sub(1, #whole - #sample) or whole
  end
  count = #prebuilt
end

-- per thread (each wrk thread has its own Lua state); read back in done()
statuses = {}

function request()
  counter = counter + 1
  local head = prebuilt[counter % count + 1]
  if not body_fmt then return head end
  return head .. string.format(body_fmt, request_id())
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
