-- POST /run with a fresh request_id every time.
local run_path = os.getenv("BENCH_RUN_PATH") or "/run"
local counter = 0
local headers = {["Content-Type"] = "application/json",
                 ["Authorization"] = wrk.headers["Authorization"]}

function request()
  counter = counter + 1
  local body = string.format(
    '{"request_id":"%s-%d-%d","body":{"utc_offset":5.5}}', nonce, tid, counter)
  return wrk.format("POST", run_path, headers, body)
end
