-- wrk reporter: one JSON line with counts and latency percentiles (microseconds).
-- With REQUESTS_FILE set (send_knock), each request is the next line "path\tauthorization\tbody".
local requests = {}
local next_index = 1

init = function(args)
  local file = os.getenv("REQUESTS_FILE")
  if file then
    for line in io.lines(file) do
      local path, auth, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
      requests[#requests + 1] = wrk.format("PUT", path,
        {["Authorization"] = auth, ["Content-Type"] = "application/json"}, body)
    end
  end
end

request = function()
  if #requests == 0 then
    return wrk.request()
  end
  local r = requests[next_index]
  next_index = next_index % #requests + 1
  return r
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "socket_errors": %d, "non2xx": %d, ' ..
    '"p50_us": %.1f, "p90_us": %.1f, "p99_us": %.1f, "mean_us": %.1f}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
