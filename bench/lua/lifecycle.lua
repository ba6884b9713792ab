-- One action's life per chain: run, status x5, cancel, release, then again.
-- Run with as many threads as connections, so that each thread's only
-- connection answers the request just sent and the chain stays in order.
local run_path = os.getenv("BENCH_RUN_PATH") or "/run"
local status_fmt = os.getenv("BENCH_STATUS_FMT") or "/%s/status"
local cancel_fmt = os.getenv("BENCH_CANCEL_FMT") or "/%s/cancel"
local release_fmt = os.getenv("BENCH_RELEASE_FMT") or "/%s/release"
-- wrk.format uses only the headers it is given
local json = {["Content-Type"] = "application/json",
              ["Authorization"] = wrk.headers["Authorization"]}
local auth = {["Authorization"] = wrk.headers["Authorization"]}
local counter = 0
local step = 0 -- 0 run, 1..5 status, 6 cancel, 7 release
local id = nil

function request()
  if step == 0 then
    counter = counter + 1
    local body = string.format(
      '{"request_id":"%s-L%d-%d","body":{"utc_offset":-3.75}}', nonce, tid, counter)
    return wrk.format("POST", run_path, json, body)
  elseif step <= 5 then
    return wrk.format("GET", string.format(status_fmt, id), auth)
  elseif step == 6 then
    return wrk.format("POST", string.format(cancel_fmt, id), auth)
  end
  return wrk.format("POST", string.format(release_fmt, id), auth)
end

function response(status, headers, body)
  if step == 0 then
    id = body and body:match('"action_id":%s*"([^"]+)"')
    if id then step = 1 end
  else
    step = step + 1
    if step > 7 then step = 0 end
  end
end
