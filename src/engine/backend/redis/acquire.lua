-- Counts one request against every limit it hits, atomically (sluice's
-- Redis state backend, `acquire`).
--
-- KEYS[1]    the next_window graces: a hash, limit -> "max secs until"
-- KEYS[2i]   the counter of call i: a hash {s = window start, w = window
--            length, n = count}
-- KEYS[2i+1] how many counters call i's limit made in its window
-- ARGV[1]    the engine's clock (seconds since the epoch)
-- ARGV[2]    the deadline on Redis's clock (microseconds; 0: none): a call
--            that arrives later was already answered without it (the
--            engine timed out) and must not count
-- ARGV[3..]  per call: limit, window start, window length, max, the most
--            counters a limit may make in a window
--
-- A counter in an older window (or of another length) starts afresh; one
-- in a newer window counts this request in that window. A request that
-- would exceed its max (raised by a grace in force) is not counted.
-- A request whose counter would be new in a limit that made its most
-- counters in the window is refused. Returns one 1 (counted), 0 (refused:
-- over the max) or 2 (refused: a new counter past the cap) per call.
local now = tonumber(ARGV[1])
local deadline = tonumber(ARGV[2])
if deadline > 0 then
  local t = redis.call('TIME')
  if tonumber(t[1]) * 1000000 + tonumber(t[2]) > deadline then
    return redis.error_reply('SLUICE_LATE the call reached Redis after its deadline')
  end
end
local out = {}
for j = 1, (#KEYS - 1) / 2 do
  local i = 2 * j
  local a = 3 + (j - 1) * 5
  local limit = ARGV[a]
  local start = tonumber(ARGV[a + 1])
  local secs = tonumber(ARGV[a + 2])
  local max = tonumber(ARGV[a + 3])
  local maxkeys = tonumber(ARGV[a + 4])
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
  local full = false
  if count == 0 and count < max then
    full = tonumber(redis.call('GET', KEYS[i + 1]) or '0') >= maxkeys
  end
  if full then
    out[#out + 1] = 2
  elseif count < max then
    redis.call('HSET', KEYS[i], 's', es, 'w', secs, 'n', count + 1)
    local ttl = es + secs - now
    if ttl < 1 then ttl = 1 end
    redis.call('EXPIRE', KEYS[i], ttl)
    if count == 0 then
      redis.call('INCR', KEYS[i + 1])
      redis.call('EXPIRE', KEYS[i + 1], ttl)
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
