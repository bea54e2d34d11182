-- Approves or rejects a waiting approval (sluice's Redis state backend,
-- `decide`).
--
-- KEYS[1]  the approval's record
-- ARGV     1 the decision, 2 who, 3 why ('' for no reason), 4 now,
--          5 how long the decided record is kept, 6 the group sets'
--          prefix, 7 the id
--
-- Returns {'ok'} | {'missing'} | {'decided'} | {'expired'}.
local r = redis.call('HMGET', KEYS[1], 'expires', 'decision', 'group', 'fp')
if not r[1] then
  return {'missing'}
end
if r[2] then
  return {'decided'}
end
local now = tonumber(ARGV[4])
if tonumber(r[1]) <= now then
  return {'expired'}
end
redis.call('HSET', KEYS[1], 'decision', ARGV[1], 'by', ARGV[2], 'decided', now)
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], 'reason', ARGV[3])
end
redis.call('ZREM', ARGV[6] .. r[3], ARGV[7])
local keep = tonumber(ARGV[5])
redis.call('EXPIRE', KEYS[1], keep)
if r[4] and redis.call('GET', r[4]) == ARGV[7] then
  redis.call('EXPIRE', r[4], keep)
end
return {'ok'}
