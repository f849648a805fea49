-- wrk script: signed C2C.CallbackAfterSendMsg callbacks, each with a new MsgKey, from one of 200
-- teachers to one of USERS offline parents, as roundup-bench's ingest scenario sends them.
--
--   wrk -t2 -c32 -d10s -s Benchmarks/ingest.lua http://127.0.0.1:8080 -- TOKEN_SIGN REQUEST_TIME [USERS] [PREFIX]
--
-- IM signs a callback with Sign = hex(SHA-256(callback_token ++ RequestTime)); Roundup accepts a
-- RequestTime up to 60 s from its clock. Lua has no SHA-256, so Benchmarks/wrk-ingest.sh computes
-- the Sign once (sha256sum) and passes it in: every request still carries it and the server
-- checks it on every request, as it would IM's. Keep a run under 60 s.

local thread_counter = 0

function setup(thread)
  thread:set("thread_id", thread_counter)
  thread_counter = thread_counter + 1
end

local texts = {
  "请明天带作业本和红领巾", "下午三点家长会，请准时参加", "孩子今天表现很好，数学小测满分", "周五春游，请准备午餐和水",
}

function init(args)
  sign = args[1]
  request_time = args[2]
  users = tonumber(args[3] or "10000")
  prefix = (args[4] or "wrk") .. "-" .. thread_id .. "-"
  seq = 0
  path = "/im/callback?SdkAppid=1400000000&CallbackCommand=C2C.CallbackAfterSendMsg&contenttype=json" ..
    "&ClientIP=127.0.0.1&OptPlatform=Android&Sign=" .. sign .. "&RequestTime=" .. request_time
  headers = { ["Content-Type"] = "application/json" }
end

local function parent(i)
  local digits = tostring(i)
  return "sch42_parent_" .. string.rep("0", math.max(0, 7 - #digits)) .. digits
end

function request()
  seq = seq + 1
  local key = prefix .. seq
  local body = '{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"teacher_' .. (seq % 200) ..
    '","To_Account":"' .. parent((seq * 7919 + thread_id) % users) .. '","MsgSeq":' .. seq ..
    ',"MsgRandom":' .. ((seq * 2654435761) % 4294967296) .. ',"MsgTime":' .. request_time ..
    ',"MsgKey":"' .. key .. '","MsgId":"wrk-' .. key .. '","OnlineOnlyFlag":0,"SendMsgResult":0,' ..
    '"ErrorInfo":"send msg succeed","UnreadMsgNum":1,' ..
    '"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"' .. texts[seq % 4 + 1] .. '"}}]}'
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  io.write(string.format("wrk: %d requests, %.0f/s, p50 %.2f ms, p99 %.2f ms, %d non-2xx, %d socket errors\n",
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
