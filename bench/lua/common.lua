-- Shared by every phase script. The harness (bench/run.py) passes everything through the
-- environment: BENCH_DATA (directory of sample files), BENCH_TOKEN (OAuth access token),
-- BENCH_SCIM_BASE ("/scim/v2/<organization id>"), BENCH_NONCE (unique per run).
-- Each phase counts its own non-2xx answers (wrk only counts >= 400) and prints one
-- "BENCH_JSON {...}" line that the harness parses.
local M = {}

M.token = os.getenv("BENCH_TOKEN") or ""
M.base = os.getenv("BENCH_SCIM_BASE") or ""
M.nonce = os.getenv("BENCH_NONCE") or "0"
M.data_dir = os.getenv("BENCH_DATA") or "."

function M.lines(name)
  local out = {}
  for line in io.lines(M.data_dir .. "/" .. name) do
    if line ~= "" then out[#out + 1] = line end
  end
  return out
end

function M.pick(list)
  return list[math.random(1, #list)]
end

function M.urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

function M.guid()
  return string.format("%08x-%04x-4%03x-%04x-%04x%08x",
    math.random(0, 0x7fffffff), math.random(0, 0xffff), math.random(0, 0xfff),
    0x8000 + math.random(0, 0x3fff), math.random(0, 0xffff), math.random(0, 0x7fffffff))
end

-- A TLS-terminating proxy sits in front of gunicorn in production; say so, as it would.
function M.headers(json_body)
  wrk.headers["Authorization"] = "Bearer " .. M.token
  wrk.headers["X-Forwarded-Proto"] = "https"
  wrk.headers["Accept"] = "application/scim+json"
  if json_body then wrk.headers["Content-Type"] = "application/scim+json" end
end

-- Installs setup/init/response/done; `extra_init(tid)` runs in each thread after seeding.
function M.install(extra_init)
  local threads = {}
  _G.setup = function(thread)
    threads[#threads + 1] = thread
    thread:set("tid", #threads)
  end
  _G.init = function(args)
    math.randomseed(os.time() * 1000 + (tid or 1) * 7919 + tonumber(M.nonce) % 100000)
    bad, seen, first_bad = 0, 0, ""
    if extra_init then extra_init(tid or 1) end
  end
  _G.response = function(status, headers, body)
    seen = seen + 1
    if status < 200 or status > 299 then
      bad = bad + 1
      if first_bad == "" then first_bad = status .. " " .. string.sub(body or "", 1, 300) end
    end
    if after_response then after_response(status, headers, body) end
  end
  _G.done = function(summary, latency, requests)
    local non2xx, sample, answered = 0, "", 0
    for _, t in ipairs(threads) do
      non2xx = non2xx + (t:get("bad") or 0)
      answered = answered + (t:get("seen") or 0)
      local fb = t:get("first_bad") or ""
      if sample == "" then sample = fb end
    end
    local e = summary.errors
    io.write(string.format(
      'BENCH_JSON {"requests":%d,"answered":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,' ..
      '"p99_us":%d,"max_us":%d,"non2xx":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,' ..
      '"sample":"%s"}\n',
      summary.requests, answered, summary.duration, latency:percentile(50),
      latency:percentile(90), latency:percentile(99), latency.max, non2xx, e.connect, e.read,
      e.write, e.timeout, (sample:gsub('[%c"\\]', " "))))
  end
end

return M
