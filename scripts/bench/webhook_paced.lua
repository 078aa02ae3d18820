-- webhook_paced.lua -- webhook.lua with a pause before each request, for the
-- paced phase of scripts/bench/webhook: a connection sends, waits for the
-- answer, waits PACE_MS, sends again. With C connections the offered rate is
-- about C / (PACE_MS + latency) requests per second, below saturation, so the
-- latency measured is the server's, not a queue's.
--
--   wrk ... -s webhook_paced.lua URL -- STEM QUOTA PACE_MS

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "webhook.lua")

local base_init = init
function init(args)
   base_init(args)
   pace_ms = tonumber(args[3] or "0")
end

function delay()
   return pace_ms
end
