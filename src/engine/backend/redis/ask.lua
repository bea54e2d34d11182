-- Asks approval for a request (sluice's Redis state backend, `ask`; the
-- lifecycle is engine::approvals's).
--
-- KEYS[1]  the request's fingerprint -> the id of its latest approval
-- KEYS[2]  the group's waiting approvals: a sorted set, id by expiry
-- KEYS[3]  every approval: a sorted set, id by creation
-- KEYS[4]  the record a new approval gets (a hash)
-- ARGV     1 the record key prefix, 2 the new id, 3 the new record's
--          document, 4 now, 5 when it expires, 6 the group's cap,
--          7 how long a record outlives its expiry, 8 the group
--
-- Returns {'pending', id} | {'new', id} | {'approved', id, by} |
-- {'rejected', id, by, reason} | {'full', '', waiting}.
local now = tonumber(ARGV[4])
local id = redis.call('GET', KEYS[1])
if id then
  local r = redis.call('HMGET', ARGV[1] .. id, 'expires', 'decision', 'consumed', 'by', 'reason')
  local expires, decision, consumed = tonumber(r[1]), r[2], r[3]
  if expires then
    if not decision then
      if expires > now then
        return {'pending', id}
      end
    elseif decision == 'approve' then
      if not consumed then
        redis.call('HSET', ARGV[1] .. id, 'consumed', now)
        return {'approved', id, r[4] or ''}
      end
    else
      return {'rejected', id, r[4] or '', r[5] or ''}
    end
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
-- A record lives at most two TTLs (waiting, then kept once decided or
-- expired): older entries of the list of all name records that are gone.
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. (now - 2 * tonumber(ARGV[7])))
local waiting = redis.call('ZCARD', KEYS[2])
if waiting >= tonumber(ARGV[6]) then
  return {'full', '', tostring(waiting)}
end
local expires = tonumber(ARGV[5])
local life = expires - now + tonumber(ARGV[7])
if life < 1 then life = 1 end
redis.call('HSET', KEYS[4], 'doc', ARGV[3], 'expires', expires, 'group', ARGV[8], 'fp', KEYS[1])
redis.call('EXPIRE', KEYS[4], life)
redis.call('SET', KEYS[1], ARGV[2], 'EX', life)
redis.call('ZADD', KEYS[2], expires, ARGV[2])
redis.call('ZADD', KEYS[3], now, ARGV[2])
return {'new', ARGV[2]}
