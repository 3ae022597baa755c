//! The Lua scripts. Each runs atomically in Redis, so "give the event its id, retain it, decide
//! its fallback" is one step that no other publisher can interleave with, on any node.
//!
//! Sequences can exceed 2^31 (a new epoch starts at the Redis clock in milliseconds × 1000, see
//! `ensure_meta`), so the scripts write integers with `int()`: Lua would print `1.7e+15`.

use ::redis::Script;

/// Helpers shared by every script (prepended to each).
const PRELUDE: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function int(n)
  return string.format('%.0f', n)
end

local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end

-- The event of a stream entry: its storage form, or the SSE frame an earlier release wrote.
local function event_of(fields)
  return field(fields, 'v') or field(fields, 'f') or ''
end

-- The bytes an entry counts for (Event::size, stored with it as 'z'; the length of what an
-- earlier release stored).
local function size_of(fields)
  local z = field(fields, 'z')
  if z then return tonumber(z) end
  return string.len(event_of(fields))
end

local function seq_of(id)
  return tonumber(string.match(id, '^(%d+)'))
end

-- The hash of publisher-chosen ids (`Keys::ids`), beside the meta key `<prefix>:meta`.
local function ids_of(meta)
  return string.sub(meta, 1, -5) .. 'ids'
end

-- The epoch, head and base, creating them (and dropping any stream left over) when Redis has
-- none. A new epoch's sequence starts at the Redis clock in ms x 1000: above every sequence of
-- an epoch before it, which would have needed a million events a second to get there. Nodes
-- compare sequences across an epoch change (a connection drops events at or below its start),
-- so they must keep growing.
local function ensure_meta(meta, events, candidate, now)
  local v = redis.call('HMGET', meta, 'epoch', 'seq', 'base')
  if not v[1] or not v[2] or not v[3] then
    local base = int(now * 1000)
    redis.call('DEL', meta, events, ids_of(meta))
    redis.call('HSET', meta, 'epoch', candidate, 'seq', base, 'base', base, 'bytes', 0)
    return candidate, tonumber(base), tonumber(base)
  end
  return v[1], tonumber(v[2]), tonumber(v[3])
end

-- Drops the oldest events beyond the limits, at most `budget` of them. Reads the stream's
-- oldest entries a few at a time and removes what goes in one `XTRIM MINID` (whole entries,
-- no tombstones left behind), so its cost grows with what it removes, never with the stream.
local function trim(meta, events, max_count, max_bytes, cutoff, budget)
  local len = redis.call('XLEN', events)
  if len == 0 or budget <= 0 then return 0 end
  local bytes = tonumber(redis.call('HGET', meta, 'bytes') or '0')
  local young = now_ms() - MIN_AGE_MS
  local removed, freed, last = 0, 0, nil
  local start = '-'
  -- The first page is the oldest entry alone: most calls keep it (nothing is old enough yet),
  -- and then reading more would be wasted.
  local count = 1
  while removed < budget do
    local page = redis.call('XRANGE', events, start, '+', 'COUNT', math.min(budget - removed, count))
    count = 16
    if #page == 0 then break end
    local kept = false
    for _, e in ipairs(page) do
      local ms = tonumber(field(e[2], 'ms') or '0')
      -- The count gives way to the transport margin (events younger than MIN_AGE_MS stay, for
      -- nodes that read late at a high publish rate); the bytes do not (Redis's memory).
      local too_many = len > max_count and ms < young
      local too_big = bytes > max_bytes and len > 1
      local too_old = ms < cutoff
      if removed >= budget or not (too_many or too_big or too_old) then
        kept = true
        break
      end
      local z = size_of(e[2])
      len, bytes, freed = len - 1, bytes - z, freed + z
      -- The event's publisher-chosen id goes with it (unless a newer event took the id).
      local k = field(e[2], 'k')
      if k then
        local ids = ids_of(meta)
        if redis.call('HGET', ids, k) == (field(e[2], 'e') or '') .. ' ' .. int(seq_of(e[1])) then
          redis.call('HDEL', ids, k)
        end
      end
      removed = removed + 1
      last = e[1]
    end
    if kept then break end
    start = '(' .. page[#page][1]
  end
  if last then
    -- Everything up to and including `last`: the entries just read, oldest first.
    redis.call('XTRIM', events, 'MINID', int(seq_of(last) + 1) .. '-0')
    redis.call('HINCRBY', meta, 'bytes', -freed)
  end
  return removed
end
"#;

/// Publishes a batch of events (the publishes that arrived together on this node, in their
/// order): one script call for all of them, so what is the same for every event of the batch
/// (the epoch, the clock, the live nodes and their presence flags, the trimming) is done once.
/// Each event costs a few commands whatever its audience (one counter read per live node and
/// target, never one per subscriber) plus its `XADD`; the sequence and the byte count are
/// written once per batch; trimming removes at most as many old
/// events as the batch adds (plus 4), each in O(1).
///
/// KEYS: meta, events, nodes, then per event its idempotency key (meta when it has none).
/// ARGV: 1 epoch candidate, 2 most events, 3 most bytes, 4 oldest age kept (ms), 5 node TTL (ms),
/// 6 node key prefix, 7 this node, 8-10 users/channels/connections suffixes, 11 idempotency
/// window (ms), then 7 per event: its storage form (`Event::stored_form`), targets, "1" for a
/// broadcast, "1" for `fallback: broadcast`, fingerprint of the publication ("" without an
/// idempotency key), the bytes it counts for (`Event::size`), the publisher's id for it ("" for
/// none: `Broker::publish_keyed`), kept in the ids hash while the event is retained.
///
/// Returns 6 values per event, `epoch, seq, fell_back, delivered, nodes_without_presence,
/// outcome`, where outcome is "new", "replayed" (the key's first answer, nothing published) or
/// "reused" (the key was used for another event; nothing published).
const PUBLISH: &str = r#"
local meta, events, nodes = KEYS[1], KEYS[2], KEYS[3]
local now = now_ms()
local epoch, last = ensure_meta(meta, events, ARGV[1], now)
local prefix = ARGV[6]
local live = redis.call('ZRANGEBYSCORE', nodes, now - tonumber(ARGV[5]), '+inf')
-- Per live node: its key prefix and whether it reports its connections (read once).
local reporting, silent = {}, 0
for _, node in ipairs(live) do
  local base = prefix .. node
  if redis.call('HGET', base, 'presence') == '1' then
    reporting[#reporting + 1] = base
  else
    silent = silent + 1
  end
end
local all = nil
local function everybody()
  if not all then
    all = 0
    for _, node in ipairs(live) do
      all = all + tonumber(redis.call('HGET', prefix .. node, 'connections') or '0')
    end
  end
  return all
end
local out = {}
local added, added_bytes = 0, 0
local ids = ids_of(meta)
local n = (#ARGV - 11) / 7
-- Formatted once: formatting a number is a large part of the script's own work.
local now_text = int(now)
local function publish_all()
  for i = 0, n - 1 do
    local a = 11 + i * 7
    local key, fingerprint = KEYS[4 + i], ARGV[a + 5]
    local seen = nil
    if fingerprint ~= '' then seen = redis.call('GET', key) end
    if seen then
      local fp, e, s, d = string.match(seen, '^(%S+) (%S+) (%S+) (%S+)$')
      if fp ~= fingerprint then
        out[#out + 1] = ''; out[#out + 1] = 0; out[#out + 1] = 0; out[#out + 1] = 0
        out[#out + 1] = 0; out[#out + 1] = 'reused'
      else
        out[#out + 1] = e; out[#out + 1] = s; out[#out + 1] = 0; out[#out + 1] = tonumber(d)
        out[#out + 1] = 0; out[#out + 1] = 'replayed'
      end
    else
      local targets = ARGV[a + 2]
      local everyone = ARGV[a + 3] == '1'
      local delivered, unknown, fell_back = 0, 0, 0
      if everyone then
        delivered = everybody()
      else
        unknown = silent
        for _, base in ipairs(reporting) do
          for item in string.gmatch(targets, '[^\n]+') do
            local kind, name = string.sub(item, 1, 1), string.sub(item, 3)
            if kind == 'u' then
              delivered = delivered + tonumber(redis.call('HGET', base .. ARGV[8], name) or '0')
            elseif kind == 'c' then
              delivered = delivered + tonumber(redis.call('HGET', base .. ARGV[9], name) or '0')
            elseif kind == 'k' then
              delivered = delivered + redis.call('SISMEMBER', base .. ARGV[10], name)
            end
          end
        end
        if delivered == 0 and unknown == 0 and ARGV[a + 4] == '1' then
          everyone = true
          fell_back = 1
          delivered = everybody()
        end
      end
      -- The sequence and the byte count are written once for the batch, below (sequences stay
      -- below 2^53: exact in a Lua number).
      last = last + 1
      local seq = int(last)
      local k = ARGV[a + 7]
      if k == '' then
        redis.call('XADD', events, seq .. '-0', 'v', ARGV[a + 1], 'z', ARGV[a + 6], 'e', epoch,
          't', targets, 'b', everyone and '1' or '0', 'ms', now_text, 'o', ARGV[7])
      else
        redis.call('XADD', events, seq .. '-0', 'v', ARGV[a + 1], 'z', ARGV[a + 6], 'e', epoch,
          't', targets, 'b', everyone and '1' or '0', 'ms', now_text, 'o', ARGV[7], 'k', k)
        redis.call('HSET', ids, k, epoch .. ' ' .. seq)
      end
      added_bytes = added_bytes + tonumber(ARGV[a + 6])
      added = added + 1
      if fingerprint ~= '' then
        redis.call('SET', key, fingerprint .. ' ' .. epoch .. ' ' .. seq .. ' ' .. int(delivered),
          'PX', ARGV[11])
      end
      out[#out + 1] = epoch; out[#out + 1] = seq; out[#out + 1] = fell_back
      out[#out + 1] = delivered; out[#out + 1] = unknown; out[#out + 1] = 'new'
    end
  end
end
-- A command that fails midway (Redis does not undo a script's writes) still leaves the
-- sequence and the byte count matching the events appended before it.
local ok, failure = pcall(publish_all)
if added > 0 then
  redis.call('HSET', meta, 'seq', int(last))
  redis.call('HINCRBY', meta, 'bytes', added_bytes)
end
if not ok then
  -- The command's own error, with its code (`NOREPLICAS`: nothing was written); `pcall`
  -- hands it over as text.
  if type(failure) == 'table' then failure = failure.err end
  return redis.error_reply(tostring(failure))
end
if added > 0 then
  trim(meta, events, tonumber(ARGV[2]), tonumber(ARGV[3]), now - tonumber(ARGV[4]), added + 4)
end
return out
"#;

/// Where a resume after an id starts, or why it cannot. Reads no events: the replay then pages
/// through them with [`REPLAY_PAGE`], so no single script copies the window.
///
/// KEYS: meta, events.
/// ARGV: 1 epoch candidate, 2 epoch of the id, 3 seq of the id, 4 window's most events,
/// 5 window's oldest age (ms), 6 most events kept, 7 most bytes kept, 8 oldest age kept (ms).
///
/// Returns `{epoch, head, "ok", first seq to replay}`, or `{epoch, head, reason}` with reason
/// `unknown_epoch` or `history_gap`.
const REPLAY: &str = r#"
local meta, events = KEYS[1], KEYS[2]
local now = now_ms()
local epoch, head = ensure_meta(meta, events, ARGV[1], now)
local after = tonumber(ARGV[3])
if ARGV[2] ~= epoch or after > head then
  return {epoch, int(head), 'unknown_epoch'}
end
trim(meta, events, tonumber(ARGV[6]), tonumber(ARGV[7]), now - tonumber(ARGV[8]), 1000)
local max_events = tonumber(ARGV[4])
local oldest = head + 1
if max_events > 0 then
  -- The stream keeps a little more than the window (for nodes that read late); the window is
  -- the newest `max_events` events younger than the oldest age.
  local cutoff = now - tonumber(ARGV[5])
  local start = '-'
  while true do
    local batch = redis.call('XRANGE', events, start, '+', 'COUNT', 100)
    if #batch == 0 then break end
    local found = nil
    for _, e in ipairs(batch) do
      if tonumber(field(e[2], 'ms') or '0') >= cutoff then
        found = seq_of(e[1])
        break
      end
    end
    if found then
      oldest = found
      break
    end
    start = '(' .. batch[#batch][1]
  end
  oldest = math.max(oldest, head - max_events + 1)
end
if after + 1 < oldest then
  return {epoch, int(head), 'history_gap'}
end
return {epoch, int(head), 'ok', int(math.max(after + 1, oldest))}
"#;

/// One page of a replay: the events from one seq up to the replay's head (at most a page of
/// them) that a connection would have received, filtered here so that only those travel.
///
/// KEYS: events.
/// ARGV: 1 first seq of the page, 2 the replay's head, 3 most stream entries to read, 4 user
/// ("" for none), 5 channels joined by "\n", 6 events the replay may still add, 7 bytes it may
/// still add.
///
/// Returns `{"ok", next seq, seq, event, seq, event...}` (each event in its storage form, or
/// as an SSE frame when an earlier release wrote it; next seq is above the head when the
/// replay is complete), `{"history_gap"}` when events from the first seq on were trimmed since
/// the replay started, or `{"replay_too_large"}` past the replay's cap.
const REPLAY_PAGE: &str = r#"
local events = KEYS[1]
local from, head, count = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
-- Trimming only ever removes the oldest entries: if the oldest one left is at or before
-- `from`, nothing this replay still needs is gone.
local first = redis.call('XRANGE', events, '-', '+', 'COUNT', 1)[1]
if first == nil or seq_of(first[1]) > from then
  return {'history_gap'}
end
local mine = nil
if ARGV[4] ~= '' then mine = '\nu:' .. ARGV[4] .. '\n' end
local channels = {}
for c in string.gmatch(ARGV[5], '[^\n]+') do
  channels[#channels + 1] = '\nc:' .. c .. '\n'
end
local events_left, bytes_left = tonumber(ARGV[6]), tonumber(ARGV[7])
local batch = redis.call('XRANGE', events, int(from) .. '-0', int(head) .. '-0', 'COUNT', count)
local out = {'ok', int(head + 1)}
for _, e in ipairs(batch) do
  local f = e[2]
  local hit = field(f, 'b') == '1'
  if not hit then
    local t = field(f, 't') or ''
    if mine and string.find(t, mine, 1, true) then hit = true end
    if not hit then
      for _, c in ipairs(channels) do
        if string.find(t, c, 1, true) then
          hit = true
          break
        end
      end
    end
  end
  if hit then
    local event = event_of(f)
    events_left = events_left - 1
    bytes_left = bytes_left - size_of(f)
    if events_left < 0 or bytes_left < 0 then
      return {'replay_too_large'}
    end
    out[#out + 1] = int(seq_of(e[1]))
    out[#out + 1] = event
  end
end
if #batch >= count then
  out[2] = int(seq_of(batch[#batch][1]) + 1)
end
return out
"#;

/// Reads (and creates) the epoch, trims the stream, and tells where it stands.
///
/// KEYS: meta, events.
/// ARGV: 1 epoch candidate, 2 most events kept, 3 most bytes kept, 4 oldest age kept (ms),
/// 5 most events to trim now, 6 the caller's position (or -1): the first retained seq above it
/// is returned, 7 the epoch of that position.
///
/// A position above the head of its own epoch means Redis lost events that were already
/// delivered (a failover to a replica that lagged, a restore from an old snapshot): the script
/// then starts a new epoch, rather than give new events ids that clients already saw.
///
/// Returns `{epoch, head, base, length, bytes, first seq or -1, next seq or -1}`.
const INFO: &str = r#"
local meta, events = KEYS[1], KEYS[2]
local now = now_ms()
local epoch, head, base = ensure_meta(meta, events, ARGV[1], now)
local after = tonumber(ARGV[6])
if ARGV[7] == epoch and after > head then
  redis.call('DEL', meta)
  epoch, head, base = ensure_meta(meta, events, ARGV[1], now)
end
trim(meta, events, tonumber(ARGV[2]), tonumber(ARGV[3]), now - tonumber(ARGV[4]), tonumber(ARGV[5]))
local first = redis.call('XRANGE', events, '-', '+', 'COUNT', 1)[1]
local next_seq = '-1'
if after >= 0 then
  local n = redis.call('XRANGE', events, int(after + 1) .. '-0', '+', 'COUNT', 1)[1]
  if n then next_seq = int(seq_of(n[1])) end
end
local first_seq = '-1'
if first then first_seq = int(seq_of(first[1])) end
return {epoch, int(head), int(base), redis.call('XLEN', events),
  redis.call('HGET', meta, 'bytes') or '0', first_seq, next_seq}
"#;

/// A node's periodic report: its figures, the TTL of its keys, its place among live nodes.
///
/// KEYS: nodes, node, users, channels, connections.
/// ARGV: 1 node id, 2 TTL (ms), 3 connections, 4 users, 5 anonymous connections, 6 channels,
/// 7 "1" when it reports its connections, 8 start time (ms), 9 event copies delivered.
///
/// Returns 1 if the node's figures were still there (0: they expired or Redis lost them, and
/// the node must write its presence again in full).
const TOUCH: &str = r#"
local now = now_ms()
local existed = redis.call('EXISTS', KEYS[2])
redis.call('HSET', KEYS[2], 'connections', ARGV[3], 'users', ARGV[4], 'anonymous', ARGV[5],
  'channels', ARGV[6], 'presence', ARGV[7], 'started', ARGV[8], 'updated', int(now),
  'delivered', ARGV[9])
for i = 2, 5 do
  redis.call('PEXPIRE', KEYS[i], ARGV[2])
end
redis.call('ZADD', KEYS[1], int(now), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. int(now - tonumber(ARGV[2])))
return existed
"#;

/// Every live node's figures and channels, and the cluster's distinct users.
///
/// KEYS: nodes. ARGV: 1 node TTL (ms), 2 node key prefix, 3 channels suffix, 4 users suffix,
/// 5 most user fields (summed over the nodes) to read for the distinct count, 6 the summed
/// field count the caller already has a fresh distinct count for (-1: none).
///
/// Returns `{distinct, fields, node, {field, value...}, {channel, count...}, node, ...}`:
/// `fields` is the live nodes' users hashes' lengths summed; `distinct` the number of distinct
/// users in them (a user connected to two nodes counts once), -1 when they hold more than
/// ARGV[5] fields together (counting would hold Redis up for too long: about a microsecond per
/// field), or -2 when `fields` is ARGV[6] (the caller's count stands; nothing was read). One
/// live node's count is its hash's length, at any size.
const NODES: &str = r#"
local now = now_ms()
local out = {0, 0}
local users = {}
for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[1]), '+inf')) do
  local base = ARGV[2] .. node
  local summary = redis.call('HGETALL', base)
  if #summary > 0 then
    out[#out + 1] = node
    out[#out + 1] = summary
    out[#out + 1] = redis.call('HGETALL', base .. ARGV[3])
    users[#users + 1] = base .. ARGV[4]
  end
end
local total = 0
for _, key in ipairs(users) do
  total = total + redis.call('HLEN', key)
end
out[2] = total
if #users <= 1 then
  out[1] = total
elseif total == tonumber(ARGV[6]) then
  out[1] = -2
elseif total > tonumber(ARGV[5]) then
  out[1] = -1
else
  local seen, distinct = {}, 0
  for _, key in ipairs(users) do
    for _, user in ipairs(redis.call('HKEYS', key)) do
      if not seen[user] then
        seen[user] = true
        distinct = distinct + 1
      end
    end
  end
  out[1] = distinct
end
return out
"#;

/// Appends one presence event (presence scripts only; the same entry as `PUBLISH` writes, to
/// one channel, never `fallback: broadcast`). Returns its sequence.
const APPEND: &str = r#"
local function append(meta, events, epoch, now, body, channel, origin)
  local seq = int(redis.call('HINCRBY', meta, 'seq', 1))
  redis.call('XADD', events, seq .. '-0', 'v', body, 'e', epoch, 't', '\nc:' .. channel .. '\n',
    'b', '0', 'ms', int(now), 'o', origin)
  redis.call('HINCRBY', meta, 'bytes', string.len(body))
  return seq
end
"#;

/// Presence changes of one node, each published only when it changes the user's presence in
/// the whole cluster.
///
/// Per (channel, user) the node holds a field `<channel>\n<user>` in its presence hash (value:
/// its leave event up to the timestamp, for a reaper), and `<prefix>:presence:channel:<channel>`
/// counts per user the nodes that hold one. A join sets the node's field if it was not set, and
/// counts the node in: the event goes out on 0 -> 1 nodes. A leave removes the field if it was
/// set, and counts the node out: the event goes out on 1 -> 0. Repeating a change is harmless.
///
/// KEYS: meta, events, presence nodes, this node's presence hash.
/// ARGV: 1 epoch candidate, 2 channel hash prefix, 3 node id, 4 most events kept, 5 most bytes
/// kept, 6 oldest age kept (ms), 7 the time for leave events (RFC 3339), 8 node TTL (ms), then
/// 4 per change:
/// "j" (join) or "l" (leave), channel, user, and for a join its event's storage form followed
/// by the start of the user's leave event to keep (joined by "\n\n", which a storage form of
/// a presence event never holds: its one line break follows the name), for a leave "". A
/// leave event is the one kept at the join, so it names the user as the join did.
///
/// Returns `{epoch, seq per change (0: nothing published)...}`.
const PRESENCE: &str = r#"
local meta, events, pnodes, mine = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = now_ms()
local epoch = ensure_meta(meta, events, ARGV[1], now)
redis.call('ZADD', pnodes, 'NX', int(now + tonumber(ARGV[8])), ARGV[3])
local out = {epoch}
for i = 9, #ARGV, 4 do
  local op, channel, user = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local member = channel .. '\n' .. user
  local counts = ARGV[2] .. channel
  local body = nil
  if op == 'j' then
    local cut = string.find(ARGV[i + 3], '\n\n', 1, true)
    if cut and redis.call('HSETNX', mine, member, string.sub(ARGV[i + 3], cut + 2)) == 1 then
      if redis.call('HINCRBY', counts, user, 1) == 1 then
        body = string.sub(ARGV[i + 3], 1, cut - 1)
      end
    end
  else
    local leave = redis.call('HGET', mine, member)
    if leave then
      redis.call('HDEL', mine, member)
      local n = redis.call('HINCRBY', counts, user, -1)
      if n <= 0 then
        redis.call('HDEL', counts, user)
        if n == 0 then body = leave .. '"' .. ARGV[7] .. '"}' end
      end
    end
  end
  if body then
    out[#out + 1] = append(meta, events, epoch, now, body, channel, ARGV[3])
  else
    out[#out + 1] = 0
  end
end
trim(meta, events, tonumber(ARGV[4]), tonumber(ARGV[5]), now - tonumber(ARGV[6]), 4)
return out
"#;

/// Renews this node's place among the nodes holding presence, and takes dead nodes' presence
/// out: a node that did not report within its own node TTL (each node's entry in presence
/// nodes is the time its presence expires, so nodes with different TTLs judge each other
/// right) is counted out of every (channel, user) it held, with a `presence:leave` where it was
/// the user's last node.
///
/// KEYS: meta, events, presence nodes.
/// ARGV: 1 epoch candidate, 2 channel hash prefix, 3 node presence hash prefix, 4 this node,
/// 5 node TTL (ms), 6 most fields to take out now, 7 "1" to take this node out too (it leaves),
/// 8 the time for the leave events (RFC 3339), 9 most events kept, 10 most bytes kept,
/// 11 oldest age kept (ms).
///
/// Returns `{1 if this node was not listed (new, or taken out as dead: it must write its
/// presence again), leave events published}`.
const REAP: &str = r#"
local meta, events, pnodes = KEYS[1], KEYS[2], KEYS[3]
local now = now_ms()
local budget = tonumber(ARGV[6])
local missing = 0
local gone = {}
if ARGV[7] == '1' then
  gone[1] = ARGV[4]
else
  missing = redis.call('ZADD', pnodes, int(now + tonumber(ARGV[5])), ARGV[4])
end
for _, node in ipairs(redis.call('ZRANGEBYSCORE', pnodes, '-inf', '(' .. int(now),
    'LIMIT', 0, 16)) do
  if node ~= ARGV[4] then gone[#gone + 1] = node end
end
local epoch = nil
local published = 0
for _, node in ipairs(gone) do
  local key = ARGV[3] .. node
  local cursor = '0'
  repeat
    local page = redis.call('HSCAN', key, cursor, 'COUNT', 100)
    cursor = page[1]
    local fields = page[2]
    for j = 1, #fields, 2 do
      local member, leave = fields[j], fields[j + 1]
      local channel, user = string.match(member, '^(.-)\n(.*)$')
      redis.call('HDEL', key, member)
      budget = budget - 1
      if channel then
        local counts = ARGV[2] .. channel
        local n = redis.call('HINCRBY', counts, user, -1)
        if n <= 0 then
          redis.call('HDEL', counts, user)
          if n == 0 then
            if not epoch then epoch = ensure_meta(meta, events, ARGV[1], now) end
            append(meta, events, epoch, now, leave .. '"' .. ARGV[8] .. '"}', channel, node)
            published = published + 1
          end
        end
      end
    end
  until cursor == '0' or budget <= 0
  if cursor == '0' then
    redis.call('DEL', key)
    redis.call('ZREM', pnodes, node)
  end
  if budget <= 0 then break end
end
if published > 0 then
  trim(meta, events, tonumber(ARGV[9]), tonumber(ARGV[10]), now - tonumber(ARGV[11]), published + 4)
end
return {missing, published}
"#;

/// The compiled scripts (each knows its SHA1 and reloads itself after a Redis restart).
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) publish: Script,
    pub(crate) replay: Script,
    pub(crate) replay_page: Script,
    pub(crate) info: Script,
    pub(crate) touch: Script,
    pub(crate) nodes: Script,
    pub(crate) presence: Script,
    pub(crate) reap: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        let min_age = super::millis(super::TRANSPORT_MIN_AGE);
        let with_prelude =
            |body: &str| Script::new(&format!("local MIN_AGE_MS = {min_age}\n{PRELUDE}\n{body}"));
        Scripts {
            publish: with_prelude(PUBLISH),
            replay: with_prelude(REPLAY),
            replay_page: with_prelude(REPLAY_PAGE),
            info: with_prelude(INFO),
            touch: with_prelude(TOUCH),
            nodes: with_prelude(NODES),
            presence: with_prelude(&format!("{APPEND}\n{PRESENCE}")),
            reap: with_prelude(&format!("{APPEND}\n{REAP}")),
        }
    }
}
