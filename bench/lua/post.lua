-- POST /Users with Entra's create body (string booleans, enterprise extension, roles: []).
-- Every user is unique per run: userName, externalId, email and mobile number.
-- BENCH_POST_LIMIT (per thread) turns the phase into an initial sync of an exact size.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local c = require("common")
local limit = tonumber(os.getenv("BENCH_POST_LIMIT") or "0")
-- Valid Saudi mobile prefixes not used by the seeded users (they use +96650).
local prefixes = { "53", "54", "55", "56", "58", "59" }
local counter, prefix, answered
c.install(function(t)
  c.headers(true)
  counter, answered = 0, 0
  prefix = prefixes[((t - 1) % #prefixes) + 1]
end)
request = function()
  counter = counter + 1
  local n = string.format("%s-%d-%d", c.nonce, tid, counter)
  local user = "bench." .. n .. "@post.example.com"
  local body = string.format([[{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],"externalId":"%s","userName":"%s","active":"True","displayName":"Posted %s","title":"Engineer","emails":[{"primary":true,"type":"work","value":"%s"}],"meta":{"resourceType":"User"},"name":{"familyName":"Posted","givenName":"User %d"},"phoneNumbers":[{"type":"mobile","value":"+966%s%07d"}],"addresses":[{"type":"work","country":"SA"}],"roles":[],"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"P%s","department":"Dept %d"}}]],
    c.guid(), user, n, user, counter, prefix, (tonumber(c.nonce) % 100 * 50000 + counter) % 10000000,
    n, counter % 50)
  return wrk.format("POST", c.base .. "/Users", nil, body)
end
after_response = function(status)
  answered = answered + 1
  if limit > 0 and answered >= limit then wrk.thread:stop() end
end
