-- wrk script: requests at a fixed pace, whatever the server answers, so that an attacker
-- takes the share of the machine a rate gives it, not all the CPU it can get.
-- Usage: wrk -cC ... -s pace.lua URL -- PAUSE_MS TOKENFILE
-- PAUSE_MS: what each connection waits before each request (C connections: about
-- C * 1000 / PAUSE_MS requests a second, a little less as answers take time).
-- TOKENFILE: one Authorization header a line, sent in turn.
local requests = {}
local i = 0
local pause_ms = 0

function init(args)
  pause_ms = tonumber(args[1])
  for line in io.lines(args[2]) do
    local headers = {}
    for name, value in pairs(wrk.headers) do headers[name] = value end
    headers["Authorization"] = line
    requests[#requests + 1] = wrk.format("GET", nil, headers)
  end
  i = math.random(#requests)
end

function delay()
  return pause_ms
end

function request()
  i = i % #requests + 1
  return requests[i]
end
