-- soak.lua — wrk script for bench/soak.sh: one request type per wrk process, chosen by the
-- first script argument, with status counts per thread reported at the end as
-- "soak-status MODE STATUS COUNT" lines (one wrk thread per process is enough: each thread
-- keeps its own counts and done() adds them up).
--   echo    POST /v1/functions/echo/invoke
--   digits  POST /v1/functions/digits/invoke   (body from the file named by the 2nd argument)
--   v2      POST /v2/models/digits/infer       (body from the file named by the 2nd argument)
--   admin   one request every ADMIN_DELAY ms (3rd argument, default 100), rotating: deploy a
--           new revision of "soak" (echo; every 40th deploy is a DELETE of it instead, so
--           it restarts at revision 1), V2 unload and load of "digits", and every 100th a
--           quantize job on digits, every 300th a one-epoch fine-tune (4th argument: the CSV);
--           run it with one connection so responses pair with requests (counted by type)
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

local body, delay_ms, csv
mode = "?"
local n = 0
counts = {}

local function readfile(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

function init(args)
  mode = args[1] or "echo"
  if mode == "digits" or mode == "v2" then
    body = readfile(args[2])
  end
  delay_ms = tonumber(args[3] or "100")
  csv = args[4] or ""
  counts = {}
end

local hdr = {["Content-Type"] = "application/json"}

local last = "?"   -- admin: the type of the request in flight (one connection: in order)

function request()
  n = n + 1
  last = mode
  if mode == "echo" then
    return wrk.format("POST", "/v1/functions/echo/invoke", hdr, '{"inputs":[[1,2,3]],"soak":' .. n .. '}')
  elseif mode == "digits" then
    return wrk.format("POST", "/v1/functions/digits/invoke", hdr, body)
  elseif mode == "v2" then
    return wrk.format("POST", "/v2/models/digits/infer", hdr, body)
  end
  if n % 300 == 0 then
    last = "finetune"
    return wrk.format("POST", "/v1/jobs", hdr,
      '{"type":"finetune","function":"digits","revision":1,"params":{"data":"' .. csv ..
      '","epochs":1,"batch_size":64,"feature_scale":0.0625,"seed":' .. n .. '}}')
  elseif n % 100 == 0 then
    last = "quantize"
    return wrk.format("POST", "/v1/jobs", hdr, '{"type":"quantize","function":"digits","revision":1}')
  end
  local k = n % 3
  if k == 0 and n % 120 == 0 then
    -- a function's JSON lists all its revisions: delete it now and then so that the run
    -- measures leaks, not a revision list that grows without end (docs/reliability.md)
    last = "delete"
    return wrk.format("DELETE", "/v1/functions/soak", hdr, "")
  elseif k == 0 then
    last = "deploy"
    return wrk.format("PUT", "/v1/functions/soak", hdr, '{"kind":"echo","concurrency":' .. (1 + n % 16) .. '}')
  elseif k == 1 then
    last = "unload"
    return wrk.format("POST", "/v2/repository/models/digits/unload", hdr, "")
  end
  last = "load"
  return wrk.format("POST", "/v2/repository/models/digits/load", hdr, "")
end

function delay()
  if mode == "admin" then
    return delay_ms
  end
  return 0
end

function response(status, headers, b)
  local key = tostring(status)
  if mode == "admin" then
    key = last .. ":" .. key
  end
  counts[key] = (counts[key] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    for k, v in pairs(c) do
      total[k] = (total[k] or 0) + v
    end
  end
  for k, v in pairs(total) do
    io.write(string.format("soak-status %s %s %d\n", threads[1]:get("mode"), k, v))
  end
  io.write(string.format("soak-errors %s connect=%d read=%d write=%d timeout=%d status=%d\n", threads[1]:get("mode"),
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout,
    summary.errors.status))
end
