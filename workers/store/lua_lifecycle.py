"""The Lua scripts of a job's lifecycle (``workers.store.lifecycle``): create, register, begin, renew, start, fail,
stop, settle, finalize; each one atomic step on the keys of one job. The request path's scripts and the shared
prefixes are in ``workers.store.lua``; each script lists the KEYS and ARGV it takes.

States: validating (API batches) -> submitting -> running -> done; failed (from validating or submitting);
submitting/running -> stopping -> cancelled | expired (validating -> cancelled | expired at once).
"""

from workers.store.lua import LUA_COMPLETE, LUA_NOW, LUA_STOP

# The job's meta becomes submitting, from ARGV: record_json, total, secret_hex, lease_s, explore_total (0: no
# exploration sample): what BEGIN (an API batch, from validating) and REGISTER (a CLI job, new) both write.
_SUBMITTING = (
    LUA_NOW
    + """
local function submitting(meta)
  local now = now_s()
  redis.call('HSET', meta, 'record', ARGV[1], 'state', 'submitting', 'total', ARGV[2], 'secret', ARGV[3],
    'started_at', stamp(now), 'lease_until', stamp(now + tonumber(ARGV[4])))
  if tonumber(ARGV[5]) > 0 then redis.call('HSET', meta, 'explore_total', ARGV[5]) end
  return 1
end
"""
)

# KEYS: meta. ARGV: record_json, owner ('' none), expires_at ('' none), lease_s, total. An API batch, validating,
# with the lease its intake renews. Returns 0 if the job exists (nothing changes).
CREATE = (
    LUA_NOW
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'record', ARGV[1], 'state', 'validating', 'total', ARGV[5],
  'lease_until', stamp(now_s() + tonumber(ARGV[4])))
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'owner', ARGV[2]) end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'expires_at', ARGV[3]) end
return 1
"""
)

# KEYS: meta, ids, order. ARGV: request ids (input order). Appends them while the batch is validating; returns 0
# (nothing changes) once it is not (cancelled, or failed).
REGISTER_IDS = """
if redis.call('HGET', KEYS[1], 'state') ~= 'validating' then return 0 end
for i = 1, #ARGV, 500 do
  local last = math.min(i + 499, #ARGV)
  redis.call('SADD', KEYS[2], unpack(ARGV, i, last))
  redis.call('RPUSH', KEYS[3], unpack(ARGV, i, last))
end
return 1
"""

# KEYS: meta. ARGV: record_json, total, secret_hex, lease_s, explore_total (0: no exploration sample).
# validating -> submitting; returns 0 when the batch is not validating (nothing changes).
BEGIN = (
    _SUBMITTING
    + """
if redis.call('HGET', KEYS[1], 'state') ~= 'validating' then return 0 end
return submitting(KEYS[1])
"""
)

# KEYS: meta. ARGV: record_json, total, secret_hex, lease_s, explore_total (0: no exploration sample).
# A CLI job, submitting. Returns 0 if the job exists (nothing changes).
REGISTER = (
    _SUBMITTING
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
return submitting(KEYS[1])
"""
)

# KEYS: meta. ARGV: lease_s. Returns 1 when renewed, 0 when the job is no longer validating or submitting.
RENEW = (
    LUA_NOW
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'validating' and state ~= 'submitting' then return 0 end
redis.call('HSET', KEYS[1], 'lease_until', stamp(now_s() + tonumber(ARGV[1])))
return 1
"""
)

# KEYS: meta, totals, explored. Returns the state after: running (or done if every result and exploration
# answer is in) from submitting; any other state unchanged (stopping, cancelled, ... when stopped meanwhile).
START = (
    LUA_NOW
    + LUA_COMPLETE
    + """
local m = redis.call('HGET', KEYS[1], 'state')
if m ~= 'submitting' then return m end
local state = 'running'
redis.call('HDEL', KEYS[1], 'lease_until')
if complete(KEYS[1], KEYS[2], KEYS[3]) then
  redis.call('HSET', KEYS[1], 'state', 'done', 'settled_at', stamp(now_s()))
  return 'done'
end
redis.call('HSET', KEYS[1], 'state', state)
return state
"""
)

# KEYS: meta, ids, done, totals, latency, escalated, explored, inflight, stopped, order. ARGV: reason,
# only_if_lease_expired (0|1), errors_json ('' none), only_state ('' validating or submitting).
# A validating or submitting job becomes failed and loses all it counted; returns {done ids, escalated ids,
# explored ids} to delete the records of, or nil when the job is not in such a state (or its lease holds).
FAIL = (
    LUA_NOW
    + """
local m = redis.call('HMGET', KEYS[1], 'state', 'lease_until')
if m[1] ~= 'submitting' and m[1] ~= 'validating' then return nil end
if ARGV[4] ~= '' and m[1] ~= ARGV[4] then return nil end
local now = now_s()
if ARGV[2] == '1' and (tonumber(m[2]) or 0) > now then return nil end
redis.call('HSET', KEYS[1], 'state', 'failed', 'failed_reason', ARGV[1], 'failed_at', stamp(now))
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'errors', ARGV[3]) end
redis.call('HDEL', KEYS[1], 'lease_until')
local out = {redis.call('SMEMBERS', KEYS[3]), redis.call('SMEMBERS', KEYS[6]), redis.call('SMEMBERS', KEYS[7])}
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10])
return out
"""
)

# KEYS: meta, ids, done, inflight, stopped, order. ARGV: reason (cancelled|expired), settle_s, only_if_due (0|1:
# only when ``expires_at`` has passed). validating -> the reason at once (nothing was published: its ids go);
# submitting/running -> stopping (or the reason when nothing is in flight). Returns the state after (unchanged
# when the job is in another state or the expiry is not due), nil when there is no such job.
STOP = (
    LUA_NOW
    + LUA_STOP
    + """
local m = redis.call('HMGET', KEYS[1], 'state', 'expires_at')
if not m[1] then return nil end
local now = now_s()
if ARGV[3] == '1' and not (m[2] and now >= tonumber(m[2])) then return m[1] end
if m[1] == 'validating' then
  redis.call('HSET', KEYS[1], 'stop', ARGV[1], 'stop_at', stamp(now), 'total', 0)
  redis.call('HDEL', KEYS[1], 'lease_until')
  redis.call('DEL', KEYS[2], KEYS[6])
  return finish(KEYS[1], ARGV[1], now)
end
if m[1] == 'submitting' or m[1] == 'running' then
  return stop(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1], ARGV[2], now)
end
return m[1]
"""
)

# KEYS: meta, inflight, stopped. A stopping job past its ``settle_by``: the answers still in flight are given up
# on (counted stopped; their late writes are refused) and it ends. Returns the state after, or nil when not due.
SETTLE = (
    LUA_NOW
    + LUA_STOP
    + """
local m = redis.call('HMGET', KEYS[1], 'state', 'settle_by', 'stop')
if m[1] ~= 'stopping' then return nil end
local now = now_s()
if now < (tonumber(m[2]) or 0) then return nil end
redis.call('SUNIONSTORE', KEYS[3], KEYS[3], KEYS[2])
redis.call('DEL', KEYS[2])
return finish(KEYS[1], m[3], now)
"""
)

# KEYS: meta. ARGV: output_file_id, error_file_id ('' none). A terminal job's files are written: 1 when
# recorded now, 0 when it was finalized before, -1 when the job is not terminal (nothing changes).
MARK_FINALIZED = (
    LUA_NOW
    + """
local m = redis.call('HMGET', KEYS[1], 'state', 'finalized_at')
if m[1] ~= 'done' and m[1] ~= 'cancelled' and m[1] ~= 'expired' and m[1] ~= 'failed' then return -1 end
if m[2] then return 0 end
redis.call('HSET', KEYS[1], 'finalized_at', stamp(now_s()))
if ARGV[1] ~= '' then redis.call('HSET', KEYS[1], 'output_file_id', ARGV[1]) end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'error_file_id', ARGV[2]) end
return 1
"""
)

# KEYS: an owner's batches (sorted set). ARGV: after ('' from the newest), limit. Returns {found (0|1), ids...}:
# up to limit + 1 ids, newest first, after the batch ``after`` (found 0: not the owner's, no ids); one read, so
# a batch created meanwhile does not shift the page.
OWNER_PAGE = """
local start = 0
if ARGV[1] ~= '' then
  local rank = redis.call('ZREVRANK', KEYS[1], ARGV[1])
  if not rank then return {0} end
  start = rank + 1
end
local out = {1}
for _, id in ipairs(redis.call('ZREVRANGE', KEYS[1], start, start + tonumber(ARGV[2]))) do out[#out + 1] = id end
return out
"""
