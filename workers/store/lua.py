"""The Lua scripts of the request path (admit, the result writes): each one atomic step on the keys of one job
(one slot). The job's lifecycle scripts are in ``workers.store.lua_lifecycle``; the prefixes below are shared.

Keys are named in ``workers.store.keys``; each script lists the KEYS and ARGV it takes. Times are Redis's clock
(``TIME``), written as seconds with six decimals.

The sets of a stopped job. From the moment a job is stopped (cancelled or expired) each of its registered
request ids is in exactly one of: ``done`` (answered), ``inflight`` (admitted by a worker, its answer not in
yet) and ``stopped`` (never started). The stop puts every id in neither of the first two into ``stopped``;
after it ADMIT adds nothing to ``inflight``; a write moves an id from ``inflight`` (or ``stopped``: a
redelivered copy that finished anyway, the answer wins) to ``done``; SKIP and SETTLE move ids from
``inflight`` to ``stopped``. So completed + failed + stopped == total once the job is terminal.
"""

# now(): Redis's clock in seconds; stamp(x): a time as the meta hash keeps it.
LUA_NOW = """
local function now_s()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function stamp(x) return string.format('%.6f', x) end
"""

# Whether every result and every exploration answer of a job is in: completed + failed >= total, and as many
# exploration (shadow) answers recorded (the explored set) as the job's sample (``explore_total``, absent when
# it has none). A prefix of the scripts that decide ``done``; ARGS: the meta, totals and explored keys.
LUA_COMPLETE = """
local function complete(meta, totals, explored)
  local m = redis.call('HMGET', meta, 'total', 'explore_total')
  local c = redis.call('HMGET', totals, 'completed', 'failed')
  if (tonumber(c[1]) or 0) + (tonumber(c[2]) or 0) < tonumber(m[1]) then return false end
  return redis.call('SCARD', explored) >= (tonumber(m[2]) or 0)
end
"""

# After LUA_NOW. finish(): a stopping job whose answers are all in (or given up on) ends in its stop reason
# (cancelled or expired). stop(): a submitting or running job is stopped; returns the state after (stopping while
# answers are in flight). The stopped set is empty before a stop (only a stopped job's ids go there), so SDIFFSTORE into
# it loses nothing.
LUA_STOP = """
local function finish(meta, reason, now)
  redis.call('HSET', meta, 'state', reason, 'settled_at', stamp(now))
  return reason
end
local function stop(meta, ids, done, inflight, stopped, reason, settle_s, now)
  redis.call('HSET', meta, 'stop', reason, 'stop_at', stamp(now), 'settle_by', stamp(now + tonumber(settle_s)))
  redis.call('HDEL', meta, 'lease_until')
  redis.call('SDIFFSTORE', stopped, ids, done, inflight)
  if redis.call('SCARD', inflight) == 0 then return finish(meta, reason, now) end
  redis.call('HSET', meta, 'state', 'stopping')
  return 'stopping'
end
local function settle_if_idle(meta, inflight, state)
  if state ~= 'stopping' or redis.call('SCARD', inflight) > 0 then return end
  finish(meta, redis.call('HGET', meta, 'stop'), now_s())
end
"""

LUA_ENDED = "local function ended(state) return state == 'cancelled' or state == 'expired' end\n"

# KEYS: meta, ids, done, explored, inflight, stopped. ARGV: request_id, want_secret (0|1), shadow (0|1),
# settle_s, mark (0|1: the caller checked the prompt's MAC). Returns {verdict[, secret_hex]}: unknown_job,
# failed_job, unregistered, done (recorded: for a shadow, its exploration answer), stopped (the job was
# cancelled or expired: this call expires it when its ``expires_at`` has passed), else ok (a routed request
# is then in flight, when marked).
ADMIT = (
    LUA_NOW
    + LUA_STOP
    + LUA_ENDED
    + """
if redis.call('TYPE', KEYS[1])['ok'] ~= 'hash' then return {'unknown_job'} end
local m = redis.call('HMGET', KEYS[1], 'state', 'secret', 'stop', 'expires_at')
local state, secret = m[1], false
if ARGV[2] == '1' then secret = m[2] end
if state == 'failed' then return {'failed_job', secret} end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then return {'unregistered', secret} end
local shadow = ARGV[3] == '1'
if redis.call('SISMEMBER', shadow and KEYS[4] or KEYS[3], ARGV[1]) == 1 then return {'done', secret} end
if m[3] or state == 'stopping' or ended(state) then return {'stopped', secret} end
if m[4] and (state == 'submitting' or state == 'running') then
  local now = now_s()
  if now >= tonumber(m[4]) then
    stop(KEYS[1], KEYS[2], KEYS[3], KEYS[5], KEYS[6], 'expired', ARGV[4], now)
    return {'stopped', secret}
  end
end
if not shadow and ARGV[5] == '1' and state ~= 'validating' then redis.call('SADD', KEYS[5], ARGV[1]) end
return {'ok', secret}
"""
)

# KEYS: meta, ids, done, inflight, stopped. ARGV: request_id. A stopped job's request that was not started
# (the worker's answer to a ``stopped`` verdict): counted stopped once. Returns 1 when counted now, 0 when it
# was recorded or counted already (or the job is not stopped).
SKIP = (
    LUA_NOW
    + LUA_STOP
    + """
local m = redis.call('HMGET', KEYS[1], 'state', 'stop')
if not m[2] then return 0 end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then return 0 end
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 then return 0 end
if redis.call('SADD', KEYS[5], ARGV[1]) == 0 then return 0 end
redis.call('SREM', KEYS[4], ARGV[1])
settle_if_idle(KEYS[1], KEYS[4], m[1])
return 1
"""
)

# KEYS: done, result, totals, latency, ids, meta, explored, inflight, stopped. ARGV: request_id, result_json,
# status, route, prompt_tokens, completion_tokens, reasoning_tokens, latency_s, fallback (1: the fallback
# endpoint answered, counted in ``fallback``; 0 or absent: not).
# Returns 1 when written, 0 when the request was already recorded (a redelivery), -1 when it is not one of
# the job's registered requests, -2 when the job failed, -3 when it ended (cancelled or expired): in those
# four cases nothing is counted. The last result makes a running job done, a stopping one cancelled/expired.
WRITE_RESULT = (
    LUA_NOW
    + LUA_COMPLETE
    + LUA_STOP
    + LUA_ENDED
    + """
if redis.call('SISMEMBER', KEYS[5], ARGV[1]) == 0 then return -1 end
local state = redis.call('HGET', KEYS[6], 'state')
if state == 'failed' then return -2 end
if ended(state) then return -3 end
redis.call('SREM', KEYS[8], ARGV[1])
local fresh = redis.call('SADD', KEYS[1], ARGV[1]) == 1
if fresh then
  redis.call('SREM', KEYS[9], ARGV[1])
  redis.call('SET', KEYS[2], ARGV[2])
  redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
  redis.call('HINCRBY', KEYS[3], ARGV[4] .. ':requests', 1)
  redis.call('HINCRBY', KEYS[3], ARGV[4] .. ':' .. ARGV[3], 1)
  redis.call('HINCRBY', KEYS[3], ARGV[4] .. ':prompt_tokens', ARGV[5])
  redis.call('HINCRBY', KEYS[3], ARGV[4] .. ':completion_tokens', ARGV[6])
  redis.call('HINCRBY', KEYS[3], ARGV[4] .. ':reasoning_tokens', ARGV[7])
  redis.call('ZADD', KEYS[4], ARGV[8], ARGV[1])
  if ARGV[9] == '1' then redis.call('HINCRBY', KEYS[3], 'fallback', 1) end
  if state == 'running' and complete(KEYS[6], KEYS[3], KEYS[7]) then
    redis.call('HSET', KEYS[6], 'state', 'done', 'settled_at', stamp(now_s()))
  end
end
settle_if_idle(KEYS[6], KEYS[8], state)
if fresh then return 1 end
return 0
"""
)

# KEYS: explored, record, totals, ids, meta. ARGV: request_id, record_json, status, route, prompt_tokens,
# completion_tokens, reasoning_tokens. An exploration (shadow) answer: its tokens go to the job's
# ``explore:<route>:*`` bucket only, never to the routed counters. Returns 1 when written, 0 when this
# request's exploration answer was already recorded (a redelivery), -1 / -2 / -3 as ``WRITE_RESULT``.
WRITE_EXPLORATION = (
    LUA_NOW
    + LUA_COMPLETE
    + LUA_ENDED
    + """
if redis.call('SISMEMBER', KEYS[4], ARGV[1]) == 0 then return -1 end
local state = redis.call('HGET', KEYS[5], 'state')
if state == 'failed' then return -2 end
if ended(state) then return -3 end
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
local b = 'explore:' .. ARGV[4] .. ':'
redis.call('HINCRBY', KEYS[3], b .. 'requests', 1)
redis.call('HINCRBY', KEYS[3], b .. ARGV[3], 1)
redis.call('HINCRBY', KEYS[3], b .. 'prompt_tokens', ARGV[5])
redis.call('HINCRBY', KEYS[3], b .. 'completion_tokens', ARGV[6])
redis.call('HINCRBY', KEYS[3], b .. 'reasoning_tokens', ARGV[7])
if state == 'running' and complete(KEYS[5], KEYS[3], KEYS[1]) then
  redis.call('HSET', KEYS[5], 'state', 'done', 'settled_at', stamp(now_s()))
end
return 1
"""
)


# KEYS: escalated, attempt, totals, ids, meta. ARGV: request_id, attempt_json, prompt, completion, reasoning
# tokens. Returns 1 when recorded, 0 when this request's first attempt was already recorded (a redelivery),
# -1 / -2 / -3 as ``WRITE_RESULT`` (unregistered, failed job, ended job): nothing changes.
WRITE_ESCALATION = (
    LUA_ENDED
    + """
if redis.call('SISMEMBER', KEYS[4], ARGV[1]) == 0 then return -1 end
local state = redis.call('HGET', KEYS[5], 'state')
if state == 'failed' then return -2 end
if ended(state) then return -3 end
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('HINCRBY', KEYS[3], 'escalation:requests', 1)
redis.call('HINCRBY', KEYS[3], 'escalation:prompt_tokens', ARGV[3])
redis.call('HINCRBY', KEYS[3], 'escalation:completion_tokens', ARGV[4])
redis.call('HINCRBY', KEYS[3], 'escalation:reasoning_tokens', ARGV[5])
return 1
"""
)
