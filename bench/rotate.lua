-- wrk script: every request carries the next Authorization header of a token file, so the
-- server sees many users in turn. Usage: wrk ... -s rotate.lua URL -- TOKENFILE
-- Each wrk thread starts at a different offset so threads do not march in step.
local tokens = {}
local i = 0

function init(args)
  for line in io.lines(args[1]) do
    tokens[#tokens + 1] = line
  end
  i = math.random(#tokens)
end

function request()
  i = i % #tokens + 1
  return wrk.format("GET", nil, { ["Authorization"] = tokens[i] })
end
