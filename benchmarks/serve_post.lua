-- wrk script of benchmarks.serve: POST the image files listed in $FILES (one path a line) as raw
-- bodies, each request the next file in turn; at the end print one JSON line with the request
-- count, the duration, p50 / p99 latency (seconds) and the errors.
local bodies = {}
for path in io.lines(os.getenv("FILES")) do
  local f = assert(io.open(path, "rb"))
  bodies[#bodies + 1] = f:read("*all")
  f:close()
end
local i = 0
local headers = {["Content-Type"] = "image/jpeg"}

request = function()
  i = i + 1
  return wrk.format("POST", nil, headers, bodies[(i % #bodies) + 1])
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"n": %d, "seconds": %.6f, "p50": %.6f, "p99": %.6f, "errors": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e6,
    latency:percentile(99) / 1e6, e.status + e.connect + e.read + e.write + e.timeout))
end
