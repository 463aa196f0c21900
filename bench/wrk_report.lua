-- wrk script for bench/: print one machine-readable line when the run ends.
--
-- Latency percentiles come from wrk's own histogram (microseconds); errors
-- and non-2xx/3xx responses come from wrk's summary (errors.status counts
-- every response outside 200-399), so no per-response Lua runs and wrk stays
-- as fast as without a script.
--
-- Optional argument (after `--`): a cap on responses per wrk thread. When it
-- is given, a response() hook counts and stops the thread at the cap, so a
-- run is bounded in requests as well as in seconds (used by smoke runs; it
-- costs wrk some speed, so timed runs leave it out).

local cap = 0
local seen = 0

function init(args)
   cap = tonumber(args[1] or "0") or 0
   if cap > 0 then
      response = function(status, headers, body)
         seen = seen + 1
         if seen >= cap then
            wrk.thread:stop()
         end
      end
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "BENCH_JSON {\"requests\": %d, \"duration_us\": %d, \"bytes\": %d, " ..
      "\"errors_connect\": %d, \"errors_read\": %d, \"errors_write\": %d, " ..
      "\"errors_timeout\": %d, \"non_2xx_3xx\": %d, " ..
      "\"latency_p50_us\": %d, \"latency_p90_us\": %d, \"latency_p99_us\": %d, " ..
      "\"latency_max_us\": %d, \"latency_mean_us\": %.1f}\n",
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.timeout, e.status,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean))
end
