-- webhook.lua -- the wrk script of scripts/bench/webhook: each request posts
-- the next unique, signed payload; answers are counted; done() prints figures.
--
--   wrk ... -s webhook.lua http://HOST:PORT/PATH -- STEM QUOTA
--
-- Thread n (1-based) reads STEM.n, written beforehand by webhook_payloads.py,
-- one "SIGNATURE BODY" per line, so threads never send the same payload. Every
-- request is a keep-alive POST of the next line's body with its signature in
-- X-PromptLayer-Signature. A payload is never sent twice: when a thread's file
-- is used up it says so on stderr, counts it (exhausted=1 in the figures), stops
-- the thread, and sends a GET of /bench-payloads-exhausted instead of a
-- repeat (404 on the receiver).
--
-- QUOTA 0: run for wrk's duration. QUOTA N > 0: the thread stops once N answers
-- have come back and creates STEM.n.done, so the driver knows when to end wrk
-- (wrk itself only stops on its timer or SIGINT).
--
-- done() prints one line "BENCH key=value ..." that the driver parses:
-- requests, duration and rate as wrk counts them, latency percentiles in ms,
-- wrk's error counters, and the sums over threads of sent (request() calls),
-- ok (200 recorded), dup (200 duplicate), other (any other status).

local threads = {}

function setup(thread)
   threads[#threads + 1] = thread
   thread:set("tid", #threads)
end

function init(args)
   stem = args[1]
   quota = tonumber(args[2] or "0")
   local name = stem .. "." .. tid
   payloads = io.open(name, "r")
   if payloads == nil then
      io.stderr:write("webhook.lua: cannot open " .. name .. "\n")
      os.exit(2)
   end
   head = "POST " .. wrk.path .. " HTTP/1.1\r\nHost: " .. wrk.headers["Host"] ..
      "\r\nContent-Type: application/json\r\nX-PromptLayer-Signature: "
   filler = "GET /bench-payloads-exhausted HTTP/1.1\r\nHost: " .. wrk.headers["Host"] .. "\r\n\r\n"
   sent, ok, dup, other, exhausted, finished = 0, 0, 0, 0, 0, false
end

function request()
   local line = payloads:read("*l")
   if line == nil then
      if exhausted == 0 then
         exhausted = 1
         io.stderr:write(string.format(
            "webhook.lua: thread %d used up its %d payloads: stopping it rather than repeating one" ..
            " (give the bench more payloads: --max-rate)\n", tid, sent))
         wrk.thread:stop()
      end
      return filler
   end
   sent = sent + 1
   -- 64 hex digits, a space, the body.
   local body = string.sub(line, 66)
   return head .. string.sub(line, 1, 64) .. "\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body
end

function response(status, headers, body)
   if status == 200 then
      if string.find(body, "duplicate", 1, true) then
         dup = dup + 1
      else
         ok = ok + 1
      end
   else
      other = other + 1
   end
   if quota > 0 and not finished and ok + dup + other >= quota then
      finished = true
      local f = io.open(stem .. "." .. tid .. ".done", "w")
      if f ~= nil then
         f:close()
      end
      wrk.thread:stop()
   end
end

function done(summary, latency, requests)
   local t = { sent = 0, ok = 0, dup = 0, other = 0, exhausted = 0 }
   for _, thread in ipairs(threads) do
      for k, _ in pairs(t) do
         t[k] = t[k] + (thread:get(k) or 0)
      end
   end
   local e = summary.errors
   local function ms(us) return string.format("%.3f", us / 1000) end
   io.write(string.format(
      "BENCH requests=%d duration_s=%.3f rps=%.1f p50_ms=%s p90_ms=%s p99_ms=%s p999_ms=%s" ..
      " max_ms=%s mean_ms=%s sent=%d ok=%d dup=%d other=%d exhausted=%d" ..
      " err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
      summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
      ms(latency:percentile(50)), ms(latency:percentile(90)), ms(latency:percentile(99)),
      ms(latency:percentile(99.9)), ms(latency.max), ms(latency.mean),
      t.sent, t.ok, t.dup, t.other, t.exhausted,
      e.connect, e.read, e.write, e.status, e.timeout))
end
