-- wrk script: every request carries the next Authorization header of a token file, so the
-- server sees many users in turn. Usage: wrk ... -s rotate.lua URL -- TOKENFILE
-- The requests are built once, at start: the client's cost per request stays close to a
-- plain wrk run's, so that the client takes no more of the machine's CPU than it does for
-- the rows it is compared with. Each wrk thread starts at a different offset so threads do
-- not march in step.
local requests = {}
local i = 0

function init(args)
  for line in io.lines(args[1]) do
    local headers = {}
    for name, value in pairs(wrk.headers) do headers[name] = value end  -- the -H headers too
    headers["Authorization"] = line
    requests[#requests + 1] = wrk.format("GET", nil, headers)
  end
  i = math.random(#requests)
end

function request()
  i = i % #requests + 1
  return requests[i]
end
