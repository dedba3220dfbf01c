-- wrk script for bench/table.py: every request another host's dyndns2 credentials.
--
--   wrk ... -s bench/nochg.lua URL -- HOSTS_FILE [close]
--
-- HOSTS_FILE holds one line per host: "PATH BASIC_TOKEN", where PATH is
-- /nic/update?hostname=...&myip=ADDRESS with the address the host already has,
-- so every answer must be "nochg ADDRESS". With "close" each request asks for
-- Connection: close and wrk opens a fresh TCP connection for the next one, as
-- routers do. Answers other than 200 "nochg ..." are counted and printed by done().

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  hosts = {}
  for line in io.lines(args[1]) do
    local path, token = line:match("^(%S+) (%S+)$")
    if path then
      hosts[#hosts + 1] = { path = path, token = token }
    end
  end
  close = args[2] == "close"
  bad = 0
  -- threads start at different hosts so that they do not walk in step
  index = math.floor((id or 0) * #hosts / 7) % #hosts
end

function request()
  index = index % #hosts + 1
  local host = hosts[index]
  local headers = { ["Authorization"] = "Basic " .. host.token, ["User-Agent"] = "ddns-bench-wrk/1.0" }
  if close then
    headers["Connection"] = "close"
  end
  return wrk.format("GET", host.path, headers)
end

function response(status, headers, body)
  -- a thread drives many connections and wrk does not say which request an
  -- answer belongs to, so the check is the answer's form: 200 "nochg ADDRESS"
  if status ~= 200 or body == nil or body:match("^nochg %S+") == nil then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + (thread:get("bad") or 0)
  end
  io.write(string.format("not_nochg %d\n", total))
end
