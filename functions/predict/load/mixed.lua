-- wrk script for `./dev load`: a mix of valid and invalid POST /predict requests against a
-- model of USERS users (handles 1..USERS), counting answers by status class.
--   80% a known handle, k = 10;  5% an unknown handle (404);  5% k out of range (422);
--   5% malformed JSON (400);     5% a cold-start profile (200).
local users = tonumber(os.getenv("KINDRED_LOAD_USERS") or "10000")
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() + math.random(1, 1000000))
  counts = { ["2xx"] = 0, ["4xx"] = 0, ["5xx"] = 0, other = 0 }
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local r = math.random(1, 100)
  local body
  if r <= 80 then
    body = string.format('{"user_handle": %d, "k": 10}', math.random(1, users))
  elseif r <= 85 then
    body = string.format('{"user_handle": %d}', users + math.random(1, 1000000))
  elseif r <= 90 then
    body = '{"user_handle": 1, "k": 1000}'
  elseif r <= 95 then
    body = '{"user_handle": '
  else
    body = '{"profile": {"tags": {"python": 3600, "sql": 600}, "interests": ["python", "data-analysis"]}}'
  end
  return wrk.format(nil, "/predict", nil, body)
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    counts["2xx"] = counts["2xx"] + 1
  elseif status >= 400 and status < 500 then
    counts["4xx"] = counts["4xx"] + 1
  elseif status >= 500 then
    counts["5xx"] = counts["5xx"] + 1
  else
    counts.other = counts.other + 1
  end
end

function done(summary, latency, requests)
  local total = { ["2xx"] = 0, ["4xx"] = 0, ["5xx"] = 0, other = 0 }
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    for k, v in pairs(c) do total[k] = total[k] + v end
  end
  io.write(string.format("requests %d in %.1f s: %.0f req/s\n", summary.requests,
    summary.duration / 1e6, summary.requests / (summary.duration / 1e6)))
  io.write(string.format("latency p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, max %.3f ms\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000, latency.max / 1000))
  io.write(string.format("answers: 2xx %d, 4xx %d, 5xx %d, other %d; socket errors: connect %d, read %d, write %d, timeout %d\n",
    total["2xx"], total["4xx"], total["5xx"], total.other, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout))
end
