-- Counts one request against every limit it hits, atomically (sluice's
-- Redis state backend, `acquire`).
--
-- KEYS[1]    the next_window graces: a hash, limit -> "max secs until"
-- KEYS[1+i]  the counter of call i: a hash {s = window start, w = window
--            length, n = count}
-- ARGV[1]    the engine's clock (seconds since the epoch)
-- ARGV[2]    the deadline on Redis's clock (microseconds; 0: none): a call
--            that arrives later was already answered without it (the
--            engine timed out) and must not count
-- ARGV[3..]  per call: limit, window start, window length, max
--
-- A counter in an older window (or of another length) starts afresh; one
-- in a newer window counts this request in that window. A request that
-- would exceed its max (raised by a grace in force) is not counted.
-- Returns one 1 (counted) or 0 (refused) per call.
local now = tonumber(ARGV[1])
local deadline = tonumber(ARGV[2])
if deadline > 0 then
  local t = redis.call('TIME')
  if tonumber(t[1]) * 1000000 + tonumber(t[2]) > deadline then
    return redis.error_reply('SLUICE_LATE the call reached Redis after its deadline')
  end
end
local out = {}
for i = 2, #KEYS do
  local a = 3 + (i - 2) * 4
  local limit = ARGV[a]
  local start = tonumber(ARGV[a + 1])
  local secs = tonumber(ARGV[a + 2])
  local max = tonumber(ARGV[a + 3])
  local h = redis.call('HMGET', KEYS[i], 's', 'w', 'n')
  local s, w, n = tonumber(h[1]), tonumber(h[2]), tonumber(h[3])
  local es, count = start, 0
  if s and n and w == secs then
    if s == start then
      count = n
    elseif s > start then
      es = s
      count = n
    end
  end
  local g = redis.call('HGET', KEYS[1], limit)
  if g then
    local gmax, gsecs, guntil = string.match(g, '^(%d+) (%d+) (%d+)$')
    if gmax and tonumber(gsecs) == secs and start < tonumber(guntil) and tonumber(gmax) > max then
      max = tonumber(gmax)
    end
  end
  if count < max then
    redis.call('HSET', KEYS[i], 's', es, 'w', secs, 'n', count + 1)
    local ttl = es + secs - now
    if ttl < 1 then ttl = 1 end
    redis.call('EXPIRE', KEYS[i], ttl)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
