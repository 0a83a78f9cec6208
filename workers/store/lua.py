"""The Lua scripts of ``workers.store.jobstore``: each one atomic step on the keys of one job (one slot).

Keys are named in ``workers.store.jobstore``; each script lists the KEYS and ARGV it takes.
"""

# Whether every result and every exploration answer of a job is in: completed + failed >= total, and as many
# exploration (shadow) answers recorded (the explored set) as the job's sample (``explore_total``, absent when
# it has none). A prefix of the scripts that decide ``done``; ARGS: the meta, totals and explored keys.
_COMPLETE = """
local function complete(meta, totals, explored)
  local m = redis.call('HMGET', meta, 'total', 'explore_total')
  local c = redis.call('HMGET', totals, 'completed', 'failed')
  if (tonumber(c[1]) or 0) + (tonumber(c[2]) or 0) < tonumber(m[1]) then return false end
  return redis.call('SCARD', explored) >= (tonumber(m[2]) or 0)
end
"""

# KEYS: meta. ARGV: record_json, total, secret_hex, lease_s, explore_total (0: no exploration sample).
# Returns 0 if the job exists (nothing changes).
REGISTER = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local now = redis.call('TIME')
redis.call('HSET', KEYS[1], 'record', ARGV[1], 'state', 'submitting', 'total', ARGV[2], 'secret', ARGV[3],
  'lease_until', tonumber(now[1]) + tonumber(ARGV[4]))
if tonumber(ARGV[5]) > 0 then redis.call('HSET', KEYS[1], 'explore_total', ARGV[5]) end
return 1
"""

# KEYS: meta. ARGV: lease_s. Returns 1 when renewed, 0 when the job is no longer submitting.
RENEW = """
if redis.call('HGET', KEYS[1], 'state') ~= 'submitting' then return 0 end
local now = redis.call('TIME')
redis.call('HSET', KEYS[1], 'lease_until', tonumber(now[1]) + tonumber(ARGV[1]))
return 1
"""

# KEYS: meta, totals, explored. Returns the state after: running (or done if every result and exploration
# answer is in) from submitting.
START = (
    _COMPLETE
    + """
local m = redis.call('HGET', KEYS[1], 'state')
if m ~= 'submitting' then return m end
local state = 'running'
if complete(KEYS[1], KEYS[2], KEYS[3]) then state = 'done' end
redis.call('HSET', KEYS[1], 'state', state)
redis.call('HDEL', KEYS[1], 'lease_until')
return state
"""
)

# KEYS: meta, ids, done, totals, latency, escalated, explored. ARGV: reason, only_if_lease_expired (0|1).
# A submitting job becomes failed and loses all it counted; returns {done ids, escalated ids, explored ids} to
# delete the records of, or nil when the job is not submitting (or its lease has not expired).
FAIL = """
local m = redis.call('HMGET', KEYS[1], 'state', 'lease_until')
if m[1] ~= 'submitting' then return nil end
if ARGV[2] == '1' and (tonumber(m[2]) or 0) > tonumber(redis.call('TIME')[1]) then return nil end
redis.call('HSET', KEYS[1], 'state', 'failed', 'failed_reason', ARGV[1])
redis.call('HDEL', KEYS[1], 'lease_until')
local out = {redis.call('SMEMBERS', KEYS[3]), redis.call('SMEMBERS', KEYS[6]), redis.call('SMEMBERS', KEYS[7])}
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
return out
"""

# KEYS: meta, ids, done (the explored set for an exploration shadow). ARGV: request_id, want_secret (0|1).
# Returns {verdict[, secret_hex]}.
ADMIT = """
if redis.call('TYPE', KEYS[1])['ok'] ~= 'hash' then return {'unknown_job'} end
local m = redis.call('HMGET', KEYS[1], 'state', 'secret')
local secret = false
if ARGV[2] == '1' then secret = m[2] end
if m[1] == 'failed' then return {'failed_job', secret} end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then return {'unregistered', secret} end
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 then return {'done', secret} end
return {'ok', secret}
"""

# KEYS: done, result, totals, latency, ids, meta, explored. ARGV: request_id, result_json, status, route,
# prompt_tokens, completion_tokens, reasoning_tokens, latency_s.
# Returns 1 when written, 0 when the request was already recorded (a redelivery), -1 when it is not one of
# the job's registered requests, -2 when the job failed: in those three cases nothing changes.
WRITE_RESULT = (
    _COMPLETE
    + """
if redis.call('SISMEMBER', KEYS[5], ARGV[1]) == 0 then return -1 end
local state = redis.call('HGET', KEYS[6], 'state')
if state == 'failed' then return -2 end
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
redis.call('HINCRBY', KEYS[3], ARGV[4] .. ':requests', 1)
redis.call('HINCRBY', KEYS[3], ARGV[4] .. ':' .. ARGV[3], 1)
redis.call('HINCRBY', KEYS[3], ARGV[4] .. ':prompt_tokens', ARGV[5])
redis.call('HINCRBY', KEYS[3], ARGV[4] .. ':completion_tokens', ARGV[6])
redis.call('HINCRBY', KEYS[3], ARGV[4] .. ':reasoning_tokens', ARGV[7])
redis.call('ZADD', KEYS[4], ARGV[8], ARGV[1])
if state == 'running' and complete(KEYS[6], KEYS[3], KEYS[7]) then redis.call('HSET', KEYS[6], 'state', 'done') end
return 1
"""
)

# KEYS: explored, record, totals, ids, meta. ARGV: request_id, record_json, status, route, prompt_tokens,
# completion_tokens, reasoning_tokens. An exploration (shadow) answer: its tokens go to the job's
# ``explore:<route>:*`` bucket only, never to the routed counters. Returns 1 when written, 0 when this
# request's exploration answer was already recorded (a redelivery), -1 / -2 as ``WRITE_RESULT``.
WRITE_EXPLORATION = (
    _COMPLETE
    + """
if redis.call('SISMEMBER', KEYS[4], ARGV[1]) == 0 then return -1 end
local state = redis.call('HGET', KEYS[5], 'state')
if state == 'failed' then return -2 end
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
local b = 'explore:' .. ARGV[4] .. ':'
redis.call('HINCRBY', KEYS[3], b .. 'requests', 1)
redis.call('HINCRBY', KEYS[3], b .. ARGV[3], 1)
redis.call('HINCRBY', KEYS[3], b .. 'prompt_tokens', ARGV[5])
redis.call('HINCRBY', KEYS[3], b .. 'completion_tokens', ARGV[6])
redis.call('HINCRBY', KEYS[3], b .. 'reasoning_tokens', ARGV[7])
if state == 'running' and complete(KEYS[5], KEYS[3], KEYS[1]) then redis.call('HSET', KEYS[5], 'state', 'done') end
return 1
"""
)


# KEYS: escalated, attempt, totals, ids, meta. ARGV: request_id, attempt_json, prompt, completion, reasoning
# tokens. Returns 1 when recorded, 0 when this request's first attempt was already recorded (a redelivery),
# -1 / -2 as ``WRITE_RESULT`` (unregistered, failed job): nothing changes.
WRITE_ESCALATION = """
if redis.call('SISMEMBER', KEYS[4], ARGV[1]) == 0 then return -1 end
if redis.call('HGET', KEYS[5], 'state') == 'failed' then return -2 end
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('HINCRBY', KEYS[3], 'escalation:requests', 1)
redis.call('HINCRBY', KEYS[3], 'escalation:prompt_tokens', ARGV[3])
redis.call('HINCRBY', KEYS[3], 'escalation:completion_tokens', ARGV[4])
redis.call('HINCRBY', KEYS[3], 'escalation:reasoning_tokens', ARGV[5])
return 1
"""
