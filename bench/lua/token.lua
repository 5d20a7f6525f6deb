-- POST /o/token/ as Entra does (client credentials in the body). BENCH_CLIENT_ID and
-- BENCH_CLIENT_SECRET come from the harness: the real secret measures tokens issued per
-- second; a wrong one is the flood of guesses the SCIM lookups are measured under.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local c = require("common")
local body = "grant_type=client_credentials&client_id=" .. c.urlencode(os.getenv("BENCH_CLIENT_ID") or "")
  .. "&client_secret=" .. c.urlencode(os.getenv("BENCH_CLIENT_SECRET") or "")
c.install(function()
  wrk.headers["X-Forwarded-Proto"] = "https"
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end)
request = function() return wrk.format("POST", "/o/token/", nil, body) end
