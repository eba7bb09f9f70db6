-- wrk script for bench/ingest.py: posts pre-signed Twilio SMS webhooks.
-- wrk's Lua has no HMAC, so bench/ingest.py signs every request beforehand into the file named by
-- BENCH_REQUESTS (one "signature<TAB>form body" per line). Each of the BENCH_THREADS wrk threads
-- takes every n-th line, so no two threads send the same MessageSid.

local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

function init(args)
  local path = os.getenv("BENCH_PATH")
  local stride = tonumber(os.getenv("BENCH_THREADS"))
  requests = {}
  local n = 0
  for line in io.lines(os.getenv("BENCH_REQUESTS")) do
    if n % stride == id then
      local tab = line:find("\t", 1, true)
      local headers = {
        ["Content-Type"] = "application/x-www-form-urlencoded",
        ["X-Twilio-Signature"] = line:sub(1, tab - 1),
      }
      table.insert(requests, wrk.format("POST", path, headers, line:sub(tab + 1)))
    end
    n = n + 1
  end
  index = 0
end

function request()
  index = index + 1
  if index > #requests then
    index = 1  -- ran out: repeats are redeliveries; bench/ingest.py refuses such a run
  end
  return requests[index]
end
