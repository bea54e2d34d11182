-- Reads the counts of limits without counting (sluice's Redis state
-- backend, `counts`: dry runs and shadow evaluation).
--
-- KEYS[i]   the counter of call i (see acquire.lua)
-- ARGV      per call: window start, window length
--
-- Returns the count of each call's window (0 for an older window or
-- another length; a newer window's count as it is).
local out = {}
for i = 1, #KEYS do
  local start = tonumber(ARGV[2 * i - 1])
  local secs = tonumber(ARGV[2 * i])
  local h = redis.call('HMGET', KEYS[i], 's', 'w', 'n')
  local s, w, n = tonumber(h[1]), tonumber(h[2]), tonumber(h[3])
  local count = 0
  if s and n and w == secs and s >= start then
    count = n
  end
  out[#out + 1] = count
end
return out
