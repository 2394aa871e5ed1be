-- wrk script for `./dev bench`: with KINDRED_BENCH_HANDLES (a file of handles in the
-- model, one per line), valid POST /predict requests with k = 10 for handles drawn at
-- random; without it, GET /health (the anchor: the HTTP exchange alone). Prints one line
-- `bench: <req/s> <p50 ms> <p99 ms> <2xx> <other answers> <socket errors>`.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() + math.random(1, 1000000))
  local file = os.getenv("KINDRED_BENCH_HANDLES")
  handles = {}
  if file then
    for line in io.lines(file) do
      table.insert(handles, line)
    end
  end
  counts = { ok = 0, other = 0 }
  if #handles > 0 then
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
  end
end

function request()
  if #handles == 0 then
    return wrk.format("GET", "/health")
  end
  local h = handles[math.random(1, #handles)]
  return wrk.format(nil, "/predict", nil, '{"user_handle": ' .. h .. ', "k": 10}')
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    counts.ok = counts.ok + 1
  else
    counts.other = counts.other + 1
  end
end

function done(summary, latency, requests)
  local ok, other = 0, 0
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    ok = ok + c.ok
    other = other + c.other
  end
  local e = summary.errors
  io.write(string.format("bench: %.0f %.3f %.3f %d %d %d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, ok, other, e.connect + e.read + e.write + e.timeout))
end
