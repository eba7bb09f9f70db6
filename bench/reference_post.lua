-- wrk script for bench/ingest.py: the yardstick's own request (the form of its post.lua: a number
-- drawn from 100,000, To, Body, MessageSid, AccountSid, NumMedia), with MessageSids that never repeat.
--
-- Why not post.lua itself: wrk never seeds Lua's random generator, so every wrk thread, and every
-- wrk run, draws the same sequence. Its two threads then post the same MessageSid (and the same
-- number) request for request, and a second run repeats the first run's ids; refapp answers a
-- repeated id with 200 and stores nothing, so part of its throughput would be cheap duplicates.
--
-- Here the MessageSid is "SM" .. 8 hex digits of the burst (BENCH_BURST: a number bench/ingest.py
-- gives each wrk run) .. 4 of the wrk thread .. 20 of the thread's own counter: 34 characters, like
-- Twilio's, unique across threads and runs. bench/ingest.py builds our side's MessageSids the same
-- way (signed beforehand, read by signed_sms.lua). Each thread seeds the generator that draws the
-- numbers with its burst and thread, so threads and runs draw different numbers.

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"

local threads = 0

function setup(thread)
  thread:set("stream", threads)
  threads = threads + 1
end

function init(args)
  burst = tonumber(os.getenv("BENCH_BURST"))
  math.randomseed(burst * 1000 + stream + 1)
  counter = 0
end

function request()
  local phone = "%2B1555" .. string.format("%07d", math.random(1, 100000))
  local sid = string.format("SM%08x%04x%020x", burst, stream, counter)
  counter = counter + 1
  local body = "From=" .. phone .. "&To=%2B15005550006&Body=hello+there&MessageSid=" .. sid
    .. "&AccountSid=AC123&NumMedia=0"
  return wrk.format(nil, nil, nil, body)
end
