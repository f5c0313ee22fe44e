-- wrk script for loadtest/run.sh's closed-loop runs: every request POSTs the
-- body in $WRK_BODY with the headers oha's runs send, and at the end one JSON
-- object goes to the file $WRK_OUT (wrk's own report is text): requests,
-- seconds, latency percentiles in ms, and errors by kind (wrk counts a status
-- outside 2xx/3xx as a "status" error).
wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY")
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer load"
wrk.headers["x-user-id"] = "user-1"

function done(summary, latency, requests)
  local ms = function(p) return latency:percentile(p) / 1000 end
  local e = summary.errors
  local file = assert(io.open(os.getenv("WRK_OUT"), "w"))
  file:write(string.format(
    '{"tool": "wrk", "requests": %d, "duration_s": %.6f, "p50": %.4f, "p99": %.4f, "p99.9": %.4f, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
    summary.requests, summary.duration / 1e6, ms(50), ms(99), ms(99.9),
    e.connect, e.read, e.write, e.status, e.timeout))
  file:close()
end
