-- End-to-end specs for the Neovim plugin against the real codila-lsp. Run from anywhere:
--
--   CODILA_TEST_MODELS=/tmp/tinymodels nvim --headless -u NONE -l editors/nvim/tests/run.lua [pattern...]
--
-- CODILA_TEST_MODELS holds dlm/ and ar/ model folders (the tests' tiny random pair:
-- python -c "import sys; sys.path.insert(0, 'tests'); from tiny_models import build_pair;
--            from pathlib import Path; build_pair(Path('/tmp/tinymodels'))").
-- CODILA_LSP is the server command (default `codila-lsp`), split on spaces. Patterns (Lua) after
-- the file run only the specs whose names match one of them. CODILA_SPEC_TIMEOUT_S (default 120) bounds each spec: past it
-- the Neovim under test is killed, the spec fails and the next one gets a fresh Neovim.
--
-- The specs drive a second Neovim (--embed) over RPC, so insert mode, autocommands, timers and
-- mappings run as they do for a user; they type keys with nvim_input and read extmarks back. Most
-- share one Neovim; those that need their own setup (a missing server, no models, other keys)
-- start their own.

local root = vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":p:h:h")
local models = assert(os.getenv("CODILA_TEST_MODELS"), "set CODILA_TEST_MODELS to a folder with dlm/ and ar/")
local cmd = vim.split(os.getenv("CODILA_LSP") or "codila-lsp", " ", { trimempty = true })
local only = _G.arg and #_G.arg > 0 and _G.arg or nil -- Lua patterns: run the specs whose names match one
local spec_timeout_ms = (tonumber(os.getenv("CODILA_SPEC_TIMEOUT_S") or "") or 120) * 1000
local tmp = vim.fn.tempname()
vim.fn.mkdir(tmp, "p")


-- In each Neovim under test: record drafts (with the extmarks they left), requests, settings sent,
-- notifications and the server's log; optionally hold responses back or rewrite them.
local INSTRUMENT = [[
  vim.cmd("filetype on")
  _G.T = { drafts = {}, logs = {}, notes = {}, requests = {}, responses = {}, configs = {}, states = {},
    response_delay = 0, clients = {} }
  vim.api.nvim_create_autocmd("User", { pattern = "CodilaStatus", callback = function()
    local now = require("codila").status_info().state
    if T.states[#T.states] ~= now then table.insert(T.states, now) end
  end })
  vim.notify = function(msg, level) table.insert(T.notes, { msg = msg, level = level }) end
  local log = vim.lsp.handlers["window/logMessage"]
  vim.lsp.handlers["window/logMessage"] = function(err, params, ctx)
    table.insert(T.logs, params.message)
    return log(err, params, ctx)
  end
  local function marks()
    return vim.api.nvim_buf_get_extmarks(0, vim.api.nvim_get_namespaces().codila, 0, -1, { details = true })
  end
  vim.api.nvim_create_autocmd("LspAttach", { callback = function(event)
    local client = vim.lsp.get_client_by_id(event.data.client_id)
    if T.clients[client.id] then return end -- one client serves every buffer
    T.clients[client.id] = true
    T.client_id = client.id
    local draft = client.handlers["codila/draft"]
    client.handlers["codila/draft"] = function(err, params, ctx)
      draft(err, params, ctx)
      table.insert(T.drafts, { id = params.id, text = params.text, done = params.done, stats = params.stats,
        masks = params.masks, marks = marks(), status = require("codila").status() })
    end
    local notify = client.notify
    client.notify = function(...)
      local args, n = { ... }, select("#", ...)
      local i = args[1] == client and 2 or 1
      if args[i] == "workspace/didChangeConfiguration" then
        local codila = args[i + 1].settings.codila
        table.insert(T.configs, vim.deepcopy(codila))
        T.suggestions = codila.suggestions
      end
      return notify(unpack(args, 1, n))
    end
    -- T.response_delay holds inline completion responses back (ms), as a busy editor might;
    -- T.rewrite(result, params, suggestions asked) replaces their result
    local request = client.request
    client.request = function(...)
      local args, n = { ... }, select("#", ...)
      local i = args[1] == client and 2 or 1 -- client:request (0.11+) or client.request (0.10)
      local method, params, handler = args[i], args[i + 1], args[i + 2]
      if method == "textDocument/inlineCompletion" then
        table.insert(T.requests, { params = vim.deepcopy(params), t = vim.uv.now(), suggestions = T.suggestions })
        local asked = T.suggestions
        args[i + 2] = function(err, result, ...)
          local rest, m = { ... }, select("#", ...)
          table.insert(T.responses, result and #(result.items or result) or 0)
          if T.rewrite and not err then
            result = T.rewrite(result, params, asked)
          end
          if T.response_delay > 0 then
            vim.defer_fn(function() handler(err, result, unpack(rest, 1, m)) end, T.response_delay)
          else
            handler(err, result, unpack(rest, 1, m))
          end
        end
      end
      return request(unpack(args, 1, n))
    end
  end })
  -- the ghost text on screen, as the text it stands for (nil when none)
  local function text(chunks)
    local s = {}
    for _, c in ipairs(chunks or {}) do s[#s + 1] = c[1] end
    return table.concat(s)
  end
  function T.ghost()
    local m = marks()
    if #m == 0 then return nil end
    local lines = { text(m[1][4].virt_text) }
    for _, line in ipairs(m[1][4].virt_lines or {}) do lines[#lines + 1] = text(line) end
    return table.concat(lines, "\n")
  end
  function T.lines() return vim.api.nvim_buf_get_lines(0, 0, -1, false) end
  function T.inline_requests() return #T.requests end
  function T.notes_matching(p)
    return #vim.tbl_filter(function(n) return n.msg:find(p) ~= nil end, T.notes)
  end
  function T.logged(p)
    return #vim.tbl_filter(function(m) return m:find(p) ~= nil end, T.logs)
  end
  -- back to the options and state the setup gave (specs change them)
  function T.reset()
    T.response_delay, T.rewrite = 0, nil
    T.drafts, T.requests, T.responses, T.configs, T.notes = {}, {}, {}, {}, {}
    require("codila.config").options = vim.deepcopy(T.options)
    require("codila").enable()
    local completion = require("codila.completion")
    for _, b in ipairs(vim.api.nvim_list_bufs()) do
      vim.b[b].codila_enabled = nil
      if vim.api.nvim_buf_is_loaded(b) and vim.bo[b].filetype ~= "" then
        completion.set_enabled(true, "filetype", b)
      end
    end
    require("codila").configure({})
  end
]]

local DEFAULT_SETUP = [[{
  cmd = cmd,
  settings = { dlm = models .. "/dlm", ar = models .. "/ar", device = "cpu", spanCaps = { blockBody = 24 } },
  debounce_ms = 50,
  restart = { delay_ms = 300, max_delay_ms = 5000, max_attempts = 5 },
}]]

local child -- the Neovim the specs drive now
local pids = {}

local function lua(code, ...)
  local result = vim.rpcrequest(child, "nvim_exec_lua", code, { ... })
  if result == vim.NIL then
    return nil
  end
  return result
end

local function keys(k)
  vim.rpcrequest(child, "nvim_input", k)
end

--- Starts a Neovim with the plugin set up by `setup` (Lua, an expression for setup()'s options,
--- with `cmd` and `models` in scope; `before`: Lua run first) and makes it the one specs drive.
local function spawn(setup, before)
  child = vim.fn.jobstart({ vim.v.progpath, "--embed", "--headless", "-u", "NONE", "-i", "NONE", "-n",
    "--cmd", "set rtp^=" .. vim.fn.fnameescape(root) }, { rpc = true })
  pids[child] = vim.fn.jobpid(child)
  lua(INSTRUMENT)
  if before then
    lua(before, cmd, models)
  end
  lua("local cmd, models = ...; require('codila').setup(" .. (setup or DEFAULT_SETUP) .. ")", cmd, models)
  lua("T.options = vim.deepcopy(require('codila.config').options)")
  return child
end

local function stop(ch)
  pcall(vim.fn.jobstop, ch)
  pids[ch] = nil
end

local function wait_for(what, condition, ms)
  if not vim.wait(ms or 20000, condition, 20) then
    local ok, seen = pcall(lua, [[return { lines = T.lines(), ghost = T.ghost(), drafts = #T.drafts,
      notes = T.notes, status = require("codila").status_info(), logs = vim.list_slice(T.logs, #T.logs - 5) }]])
    error(("timed out waiting for %s; the child has %s"):format(what, vim.inspect(ok and seen or "died")), 2)
  end
end

local function eq(expected, actual, what)
  if not vim.deep_equal(expected, actual) then
    error(("%s: expected %s, got %s"):format(what, vim.inspect(expected), vim.inspect(actual)), 2)
  end
end

local function state()
  return lua("return require('codila').status_info().state")
end

local function wait_ready(ms)
  wait_for("the models to load (status ready)", function()
    return state() == "ready"
  end, ms or 60000)
end

local function open(name, text)
  local path = tmp .. "/" .. name
  vim.fn.writefile(vim.split(text, "\n"), path)
  lua("vim.cmd.edit(...); T.drafts = {}", path)
  wait_for("codila-lsp to attach", function()
    return lua([[return #vim.lsp.get_clients({ bufnr = 0, name = "codila" }) == 1]])
  end)
  wait_for("the models to load", function()
    local now = state()
    return now ~= "loading" and now ~= "off"
  end, 60000)
end

--- Runs `fn` in a Neovim of its own, set up with `setup` (see spawn).
local function alone(setup, before, fn)
  local main = child
  spawn(setup, before)
  local ok, err = pcall(fn)
  stop(child)
  child = main
  if not ok then
    error(err, 0)
  end
end

-- `text` as ghost text shows it: control characters as ^X (random tiny models write some); in a
-- draft (`draft`: its `masks`) each masked run as one `·` per masked token
local function shown(text, draft)
  local lines = vim.tbl_map(vim.fn.strtrans, vim.split(text, "\n"))
  local out = table.concat(lines, "\n")
  if draft then
    local run = 0
    out = out:gsub("⋯", function()
      run = run + 1
      return string.rep("·", draft[run])
    end)
  end
  return out
end

local function final_draft()
  return lua("for _, d in ipairs(T.drafts) do if d.done then return d end end")
end

local function ghost()
  return lua("return T.ghost()")
end

local function lines()
  return lua("return T.lines()")
end

local function requests()
  return lua("return T.inline_requests()")
end

-- T.rewrite bodies: the server's real answer replaced by known suggestions at the same range
local REWRITE = [[
  local texts = { ... }
  T.rewrite = function(result, params, asked)
    local item = result and (result.items or result)[1]
    local range = item and item.range or { start = params.position, ["end"] = params.position }
    local n = (asked or 1) > 1 and #texts or 1
    local items = {}
    for i = 1, n do items[i] = { insertText = texts[i], range = range } end
    return { items = items }
  end
]]

local function wait_ghost(text, what)
  wait_for(what or ("the ghost text " .. vim.inspect(text)), function()
    return ghost() == text
  end)
end

--- Forgets the server's log so far, once late lines from earlier specs (a cancel) have arrived.
local function fresh_log()
  vim.wait(300)
  lua("T.logs = {}")
end

local function no_request_for(ms, what)
  local before = requests()
  vim.wait(ms)
  eq(before, requests(), what)
end

local specs = {}
local function spec(name, fn)
  specs[#specs + 1] = { name = name, fn = fn }
end

-- --- the draft, the suggestion, accepting ------------------------------------------------------

spec("drafts grow in place with masked runs as placeholders; Tab accepts; the status follows", function()
  lua("T.response_delay = 3000") -- Tab works from the final draft on, before the response
  open("grow.py", "def add(a, b):\n    return a + b\n\n\ndef scale(x, k)")
  keys("GA:") -- the last line becomes `def scale(x, k):`, the cursor at its end
  wait_for("the final suggestion", function()
    local done = final_draft()
    return done ~= nil and ghost() == shown(done.text)
  end)
  local done = final_draft()
  local drafts = lua("return vim.tbl_filter(function(d) return not d.done end, T.drafts)")
  assert(#drafts >= 2, "expected the decode to stream several drafts, got " .. #drafts)
  local mark_id = drafts[1].marks[1] and drafts[1].marks[1][1]
  local masked = 0
  for i, draft in ipairs(drafts) do
    eq(1, #draft.marks, "extmarks after draft " .. i)
    eq(mark_id, draft.marks[1][1], "the extmark id after draft " .. i)
    eq({ 4, 16 }, { draft.marks[1][2], draft.marks[1][3] }, "the draft's position (end of `def scale(x, k):`)")
    local d = draft.marks[1][4]
    local ghost_lines = {}
    for _, line in ipairs(vim.list_extend({ d.virt_text }, d.virt_lines or {})) do
      local s = {}
      for _, chunk in ipairs(line) do
        s[#s + 1] = chunk[1]
        if chunk[2] == "CodilaMasked" or (type(chunk[2]) == "table" and chunk[2][1] == "CodilaMasked") then
          masked = masked + 1
          assert(#chunk[1] > 0 and chunk[1]:gsub("·", "") == "", "a masked run is drawn as dots: " .. chunk[1])
        end
      end
      ghost_lines[#ghost_lines + 1] = table.concat(s)
    end
    eq(shown(draft.text, draft.masks), table.concat(ghost_lines, "\n"), "draft " .. i .. " as virt_text + virt_lines")
    assert(draft.status:find("^codila: decoding"), "the status while decoding: " .. draft.status)
  end
  assert(drafts[1].text:find("⋯"), "the first draft has masked tokens (⋯): " .. drafts[1].text)
  assert(masked >= 1, "masked runs are drawn as CodilaMasked placeholders")
  assert(drafts[1].text:find("\n"), "a block body starts on a new line (virt_lines): " .. drafts[1].text)
  assert(done.stats and done.stats.tokens_per_s, "the final draft carries stats")
  eq(("codila: %.1f tok/s"):format(done.stats.tokens_per_s), lua("return require('codila').status()"),
    "the status after the decode")

  local before = lines()
  keys("<Tab>")
  local expected = vim.split(table.concat(before, "\n") .. done.text, "\n")
  wait_for("the suggestion to be inserted", function()
    return vim.deep_equal(lines(), expected)
  end, 2000)
  eq(nil, ghost(), "ghost text after accepting")
  eq("i", lua("return vim.api.nvim_get_mode().mode"), "mode after accepting")
  eq({ #expected, #expected[#expected] }, lua("return vim.api.nvim_win_get_cursor(0)"), "cursor after accepting")
  vim.wait(1500) -- the held-back response arrives and must change nothing
  eq(expected, lines(), "buffer after the late response")
end)

spec("live_draft = false shows only the finished suggestion", function()
  lua("require('codila.config').options.live_draft = false")
  open("nodraft.py", "def mul(a, b)")
  keys("A:")
  wait_for("the final suggestion", function()
    local done = final_draft()
    return done ~= nil and ghost() == shown(done.text)
  end)
  local drafts = lua("return vim.tbl_filter(function(d) return not d.done end, T.drafts)")
  assert(#drafts >= 1, "the server still streams drafts")
  for i, draft in ipairs(drafts) do
    eq(0, #draft.marks, "extmarks after draft " .. i)
  end
end)

spec("accept word, accept line, then the rest", function()
  lua(REWRITE, "\n    total = a + b\n    return total")
  open("words.py", "def f(a, b)")
  keys("A:")
  wait_ghost("\n    total = a + b\n    return total")
  local asked = requests()
  keys("<C-Right>")
  wait_for("the first word", function()
    return vim.deep_equal(lines(), { "def f(a, b):", "    total" })
  end, 3000)
  eq(" = a + b\n    return total", ghost(), "the rest after accepting a word")
  eq({ 2, 9 }, lua("return vim.api.nvim_win_get_cursor(0)"), "cursor after the word")
  keys("<C-Right>")
  wait_for("the second word", function()
    return vim.deep_equal(lines(), { "def f(a, b):", "    total =" })
  end, 3000)
  keys("<S-Tab>")
  wait_for("the line", function()
    return vim.deep_equal(lines(), { "def f(a, b):", "    total = a + b" })
  end, 3000)
  eq("\n    return total", ghost(), "the rest after accepting a line")
  no_request_for(300, "requests after accepting parts (the rest stays on screen)")
  eq(asked, requests(), "no new request")
  keys("<S-Tab>")
  wait_for("the last line", function()
    return vim.deep_equal(lines(), { "def f(a, b):", "    total = a + b", "    return total" })
  end, 3000)
  eq({ 3, 16 }, lua("return vim.api.nvim_win_get_cursor(0)"), "cursor after the last line")
  eq("i", lua("return vim.api.nvim_get_mode().mode"), "mode after accepting")
end)

spec("next / previous cycle through suggestions, asking the server for several once", function()
  lua(REWRITE, "return a", "return b", "return c")
  open("cycle.py", "def g(a, b)")
  keys("A:")
  wait_ghost("return a")
  eq(1, requests(), "one request for the first suggestion")
  keys("<M-]>")
  wait_ghost("return b", "the second suggestion after <M-]>")
  local reqs = lua("return T.requests")
  eq(2, #reqs, "cycling asks once more")
  eq(3, reqs[2].suggestions, "the server setting `suggestions` while cycling")
  eq(1, reqs[2].params.context.triggerKind, "the cycling request is invoked")
  wait_for("`suggestions` set back to 1", function()
    return lua("return T.suggestions") == 1
  end, 3000)
  eq("codila: ready [2/3]", lua("return require('codila').status():gsub('[%d.]+ tok/s', 'ready')"), "status")
  keys("<M-]>")
  wait_ghost("return c")
  keys("<M-]>")
  wait_ghost("return a", "wrapping around")
  keys("<M-[>")
  wait_ghost("return c", "previous")
  eq(2, requests(), "no request for cycling among the ones there")
  keys("<Tab>")
  wait_for("the chosen suggestion inserted", function()
    return vim.deep_equal(lines(), { "def g(a, b):return c" })
  end, 3000)
  keys("<Esc>")

  lua(REWRITE, "return x") -- a server that answers one suggestion only: cycling changes nothing
  open("single.py", "def h(a)")
  keys("A:")
  wait_ghost("return x")
  local before = requests()
  keys("<M-]>")
  wait_for("the cycling request", function()
    return requests() == before + 1
  end, 5000)
  wait_for("its end", function()
    return not lua("return require('codila').status():find('decoding')")
  end)
  eq("return x", ghost(), "the one suggestion stays")
  keys("<M-]>")
  vim.wait(300)
  eq(before + 1, requests(), "asked once only")
  eq("return x", ghost(), "still the one suggestion")
  keys("<Esc>")

  -- the server's own suggestions (its setting `suggestions`: one decode per seed), sampled
  lua("T.rewrite = nil; require('codila').configure({ temperature = 1.0 })")
  open("sampled.py", "def r(a, b)")
  local responses = lua("return #T.responses")
  keys("A:")
  wait_for("a suggestion", function() -- (random bytes: not compared with the draft's text here)
    return lua("return #T.responses") == responses + 1 and ghost() ~= nil
  end)
  local first = ghost()
  local answered = lua("return #T.responses")
  keys("<M-]>")
  wait_for("the server's answer with 3 suggestions", function()
    return lua("return #T.responses") > answered
  end, 60000)
  eq(3, lua("return T.responses[#T.responses]"), "suggestions in the answer to the cycling request")
  wait_for("another suggestion on screen", function()
    return ghost() ~= first
  end, 3000)
  assert(lua("return require('codila').status()"):find("%[2/%d%]"), "the status shows which suggestion")
end)

-- --- keys and their fallbacks -------------------------------------------------------------------

spec("Tab without a suggestion inserts a tab", function()
  open("tab.py", "x = 1")
  keys("o<Tab>")
  wait_for("the tab", function()
    return vim.deep_equal(lines(), { "x = 1", "\t" })
  end, 5000)
end)

spec("Tab falls back to the user's own mapping (global, or a completion plugin's wrapper)", function()
  lua("require('codila.config').options.auto_trigger = false") -- no suggestion unless asked
  open("fallback.py", "x = 1")
  -- a snippet plugin's global <Tab>, mapped after codila mapped the buffer
  lua([[vim.keymap.set("i", "<Tab>", function() return "<snip>" end, { expr = true })]])
  keys("o<Tab>")
  wait_for("the user's global mapping", function()
    return vim.deep_equal(lines(), { "x = 1", "<snip>" })
  end, 5000)
  keys("<Esc>")
  -- nvim-cmp's way: on InsertEnter a buffer-local <Tab> that calls the mapping it replaced
  lua([[
    vim.api.nvim_create_autocmd("InsertEnter", { buffer = 0, once = true, callback = function()
      local replaced = vim.fn.maparg("<Tab>", "i", false, true)
      vim.keymap.set("i", "<Tab>", function()
        T.wrapper_calls = (T.wrapper_calls or 0) + 1
        return replaced.callback()
      end, { buffer = true, expr = true, remap = true })
    end })
  ]])
  keys("o<Tab>")
  wait_for("the wrapper's fallback reaching the global mapping", function()
    return vim.deep_equal(lines(), { "x = 1", "<snip>", "<snip>" })
  end, 5000)
  lua(REWRITE, "y = 2")
  keys("<CR><M-\\>") -- the trigger key
  wait_ghost("y = 2")
  keys("<Tab>")
  wait_for("the suggestion accepted through the wrapper", function()
    return vim.deep_equal(lines(), { "x = 1", "<snip>", "<snip>", "y = 2" })
  end, 5000)
  eq(2, lua("return T.wrapper_calls"), "the wrapper ran for both <Tab>s")
  keys("<Esc>")
  lua([[vim.keymap.del("i", "<Tab>"); vim.keymap.del("i", "<Tab>", { buffer = 0 })]])
end)

spec("every key is configurable or off; unknown options are reported", function()
  alone([[{
    cmd = cmd, debounce_ms = 50, bogus = 1,
    settings = { dlm = models .. "/dlm", ar = models .. "/ar", device = "cpu", spanCaps = { blockBody = 24 } },
    keys = { accept = "<C-l>", accept_word = false, accept_line = false, next = false, prev = false,
             dismiss = false, trigger = "<C-g>s" },
  }]], nil, function()
    open("keys.py", "def k(n)")
    local function codila_mapped(lhs)
      return lua([[return (vim.fn.maparg(..., "i", false, true).desc or ""):find("^codila") ~= nil]], lhs)
    end
    eq(false, codila_mapped("<Tab>"), "<Tab> is not mapped by codila")
    eq(false, codila_mapped("<C-Right>"), "<C-Right> is not mapped by codila")
    assert(lua([[return vim.fn.maparg("<C-l>", "i", false, true).desc]]):find("accept"), "<C-l> accepts")
    eq(1, lua("return T.notes_matching('unknown option `bogus`')"), "the unknown option reported")
    eq(false, lua("return require('codila').accept()"), "accept() without a suggestion")
    lua(REWRITE, "return n")
    keys("A:")
    wait_ghost("return n")
    keys("<C-l>")
    wait_for("<C-l> to accept", function()
      return vim.deep_equal(lines(), { "def k(n):return n" })
    end, 3000)
  end)
end)

-- --- dismissing, cancelling, triggering, pacing -------------------------------------------------

spec("typing cancels a stale decode; Esc dismisses the draft and cancels the decode", function()
  lua([[require("codila").configure({ spanCaps = { blockBody = 512 } }); T.logs = {}]]) -- long decodes
  wait_for("the new settings", function()
    return lua("return T.logged('caps=.*block_body:512')") > 0
  end, 5000)
  open("esc.py", "def f(n)")
  fresh_log()
  local function cancelled()
    return lua("return T.logged('block_body.*: cancelled')")
  end
  keys("A:")
  wait_for("a draft on screen", function()
    return ghost() ~= nil
  end)
  local first = lua("return T.drafts[1].id")
  keys("<BS>:") -- same text, new request: the first one is stale
  wait_for("the first decode to be cancelled", function()
    return cancelled() == 1
  end)
  wait_for("the new request's draft on screen", function()
    local last = lua("return T.drafts[#T.drafts]")
    return last.id > first and ghost() == shown(last.text, last.masks)
  end)
  keys("<Esc>")
  wait_for("the second decode to be cancelled", function()
    return cancelled() == 2
  end)
  vim.wait(200)
  eq(nil, ghost(), "ghost text after <Esc>")
  eq({ "def f(n):" }, lines(), "buffer after <Esc>")
end)

spec("the dismiss key drops the draft and cancels; without one it does what it did", function()
  lua([[require("codila").configure({ spanCaps = { blockBody = 512 } })]])
  open("dismiss.py", "def d(n)")
  fresh_log()
  keys("A:")
  wait_for("a draft on screen", function()
    return ghost() ~= nil
  end)
  keys("<C-]>")
  wait_for("the decode to be cancelled", function()
    return lua("return T.logged('block_body.*: cancelled')") == 1
  end)
  eq(nil, ghost(), "ghost text after the dismiss key")
  eq("i", lua("return vim.api.nvim_get_mode().mode"), "still in insert mode")
  lua([[vim.keymap.set("i", "<C-]>", "<dismissed>")]]) -- the user's own mapping of the key
  keys("<C-]>")
  wait_for("the user's mapping", function()
    return vim.deep_equal(lines(), { "def d(n):<dismissed>" })
  end, 3000)
  lua([[vim.keymap.del("i", "<C-]>")]])
end)

spec("moving the cursor dismisses the suggestion", function()
  open("move.py", "def g(n)")
  keys("A:")
  wait_for("ghost text", function()
    return ghost() ~= nil
  end)
  keys("<Left>")
  wait_for("the ghost text to go", function()
    return ghost() == nil
  end, 5000)
  vim.wait(200)
  eq(nil, ghost(), "ghost text after moving")
  eq({ "def g(n):" }, lines(), "buffer after moving")
end)

spec("auto_trigger = false: typing asks nothing, the trigger key asks", function()
  lua("require('codila.config').options.auto_trigger = false")
  open("manual.py", "def m(n)")
  keys("A:")
  no_request_for(500, "requests while typing")
  eq(nil, ghost(), "no ghost text")
  keys("<M-\\>")
  wait_for("a suggestion", function()
    local done = final_draft()
    return done ~= nil and ghost() == shown(done.text)
  end)
  eq(1, lua("return T.requests[1].params.context.triggerKind"), "triggerKind Invoked")
end)

spec("debounce_ms sets the typing pause before a request", function()
  lua("require('codila.config').options.debounce_ms = 800")
  open("debounce.py", "def p(n)")
  local t0 = lua("return vim.uv.now()")
  keys("A:")
  vim.wait(450)
  eq(0, requests(), "requests 450 ms after typing")
  wait_for("the request", function()
    return requests() == 1
  end, 5000)
  local t = lua("return T.requests[1].t")
  assert(t - t0 >= 780, ("the request came %d ms after typing, before debounce_ms"):format(t - t0))
end)

spec("enable / disable / toggle: everywhere, per buffer, per filetype", function()
  local codila = "require('codila')"
  open("a.py", "def a(n)")
  lua("vim.cmd('Codila disable')")
  eq("codila: off", lua("return " .. codila .. ".status()"), "status when off")
  keys("A:")
  no_request_for(400, "requests while disabled")
  keys("<M-\\>")
  wait_for("the trigger to say it is off", function()
    return lua("return T.notes_matching('suggestions are off here')") == 1
  end, 3000)
  eq(0, requests(), "the trigger asks nothing while disabled")
  keys("<Esc>")
  lua("vim.cmd('Codila enable')")
  keys("a<BS>:")
  wait_for("a request once enabled", function()
    return requests() == 1
  end, 5000)
  keys("<Esc>")

  lua("vim.cmd('Codila disable buffer')")
  eq(false, lua("return vim.b.codila_enabled"), "vim.b.codila_enabled")
  keys("a<BS>:")
  no_request_for(400, "requests in the disabled buffer")
  keys("<Esc>")
  open("b.py", "def b(n)")
  keys("A:")
  wait_for("a request in another buffer", function()
    return requests() == 2
  end, 5000)
  keys("<Esc>")

  lua("vim.cmd('Codila toggle filetype')")
  eq(false, lua("return " .. codila .. ".is_enabled()"), "python off")
  keys("a<BS>:")
  no_request_for(400, "requests with the filetype off")
  keys("<Esc>")
  lua("vim.cmd('Codila toggle filetype')")
  keys("a<BS>:")
  wait_for("a request with the filetype on again", function()
    return requests() == 3
  end, 5000)
end)

spec("request_timeout_ms cancels a long decode and says so once", function()
  lua([[require("codila").configure({ spanCaps = { blockBody = 512 } }) -- decodes far longer than the cap
        require('codila.config').options.request_timeout_ms = 400]])
  open("slow.py", "def s(n)")
  keys("A:")
  wait_for("the cap's message", function()
    return lua("return T.notes_matching('took longer than 400 ms')") == 1
  end)
  eq(nil, ghost(), "ghost text after the cap")
  eq(false, lua("return require('codila').status():find('decoding') ~= nil"), "status after the cap")
  local asked = requests()
  keys("<BS>:")
  wait_for("the next request", function()
    return requests() > asked
  end, 5000)
  vim.wait(1500) -- without the cap its drafts would still be growing
  eq(nil, ghost(), "ghost text 1.5 s after the next request")
  eq(false, lua("return require('codila').status():find('decoding') ~= nil"), "status after the second cap")
  eq(1, lua("return T.notes_matching('took longer than')"), "messages about the cap")
end)

-- --- the server ---------------------------------------------------------------------------------

spec("server death mid-decode: draft cleared, said once, restarted with backoff", function()
  lua([[require("codila").configure({ spanCaps = { blockBody = 512 } })]])
  open("die.py", "def z(n)")
  local function kill_server()
    lua([[for _, pid in ipairs(vim.api.nvim_get_proc_children(vim.fn.getpid())) do vim.uv.kill(pid, "sigkill") end]])
  end
  local first = lua("return T.client_id")
  keys("A:")
  wait_for("a draft on screen", function()
    return ghost() ~= nil
  end)
  kill_server()
  wait_for("the draft to be cleared", function()
    return ghost() == nil
  end, 5000)
  wait_for("the message", function()
    return lua("return T.notes_matching('^codila: codila%-lsp exited')") == 1
  end, 5000)
  local note = lua("return vim.tbl_filter(function(n) return n.msg:find('^codila: codila%-lsp exited') end, T.notes)[1].msg")
  assert(note:find("while decoding") and note:find("Restarting it in 0.3 s"), note)
  wait_for("a new server", function()
    local id = lua("return T.client_id")
    return id ~= first and lua("return #vim.lsp.get_clients({ bufnr = 0, name = 'codila' })") == 1
  end)
  wait_ready()
  local second = lua("return T.client_id")
  kill_server() -- again at once: a streak, so the delay doubles and nothing more is said
  wait_for("the second restart", function()
    return lua("return T.client_id") ~= second
  end)
  eq(600, lua("return require('codila').status_info().restart_delay_ms"), "the doubled delay")
  eq(1, lua("return T.notes_matching('^codila: codila%-lsp exited')"), "messages about the exits")
  wait_ready()
  lua("T.drafts = {}")
  keys("<Esc>A<BS>:")
  wait_for("a draft from the new server", function()
    return ghost() ~= nil
  end)
end)

spec(":CodilaInfill replaces the visual selection, streaming drafts meanwhile", function()
  open("infill.py", "def add(a, b):\n    return a + b\n\nprint(add(1, 2))")
  keys("2G0wwv$:CodilaInfill<CR>") -- selects `a + b`
  local function expected()
    local done = final_draft()
    return done and "def add(a, b):\n    return " .. done.text .. "\n\nprint(add(1, 2))"
  end
  wait_for("the infill to be applied", function()
    return expected() ~= nil and table.concat(lines(), "\n") == expected()
  end)
  local drafts = lua("return vim.tbl_filter(function(d) return not d.done end, T.drafts)")
  assert(#drafts >= 1 and #drafts[1].marks == 1, "the infill's drafts are shown as an extmark")
  eq({ 1, 11 }, { drafts[1].marks[1][2], drafts[1].marks[1][3] }, "the infill draft's position (start of `a + b`)")
  eq({ 1, 16 }, { drafts[1].marks[1][4].end_row, drafts[1].marks[1][4].end_col }, "the replaced text's end")
  wait_for("the draft to go", function()
    return ghost() == nil
  end, 5000)
end)

spec(":checkhealth codila reports the server, version, models, device, dtype, last error", function()
  open("health.py", "def add(a, b)")
  keys("A:") -- a completion, so that the report has the device and dtype the models ran on
  wait_for("a completion's statistics", function()
    return final_draft() ~= nil
  end)
  local report = lua([[
    vim.cmd("checkhealth codila")
    local text = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), "\n")
    vim.cmd("bwipe!")
    return text
  ]])
  for _, want in ipairs({ "found: ", "version: codila%-lsp %d", "running: client", "dlm: ", "ar: ",
    "device: cpu %(in use: cpu%)", "dtype: auto %(in use: %w+%)", "last error", "state: ready" }) do
    assert(report:find(want), ("the report has %q:\n%s"):format(want, report))
  end
  assert(not report:find("ERROR"), "no errors in the report:\n" .. report)
  local log = lua([[vim.cmd("Codila log")
    local t = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), "\n"); vim.cmd("bwipe!"); return t]])
  assert(log:find("models loaded"), ":Codila log shows the server's messages:\n" .. log)
end)

spec("doc/codila.txt: its help tags build and :help finds them", function()
  local doc = tmp .. "/rtp/doc"
  vim.fn.mkdir(doc, "p")
  vim.fn.writefile(vim.fn.readfile(root .. "/doc/codila.txt"), doc .. "/codila.txt")
  local found = lua([[
    local doc = ...
    vim.cmd("helptags " .. vim.fn.fnameescape(doc))
    vim.opt.rtp:append(vim.fs.dirname(doc))
    local found = {}
    for _, tag in ipairs({ "codila", "codila-config", "codila-keys", "codila-fallback", "codila-drafts",
      ":Codila", ":CodilaInfill", "codila-status", "hl-CodilaGhost", "codila-health" }) do
      vim.cmd("help " .. tag)
      found[#found + 1] = vim.fs.basename(vim.api.nvim_buf_get_name(0))
      vim.cmd("helpclose")
    end
    return found
  ]], doc)
  for i, name in ipairs(found) do
    eq("codila.txt", name, "help tag " .. i)
  end
end)

spec("codila-lsp missing: said once, the user's later FileType autocmds still run", function()
  alone([[{ cmd = { "/nonexistent/codila-lsp" } }]], nil, function()
    lua([[vim.api.nvim_create_autocmd("FileType", { pattern = "python", callback = function()
      T.user_filetype = (T.user_filetype or 0) + 1 end })]])
    for _, name in ipairs({ "m1.py", "m2.py" }) do
      local path = tmp .. "/" .. name
      vim.fn.writefile({ "x = 1" }, path)
      lua("vim.cmd.edit(...)", path)
    end
    eq(2, lua("return T.user_filetype"), "the user's FileType autocmd ran for both buffers")
    wait_for("the message", function()
      return lua("return T.notes_matching('not found')") >= 1
    end, 3000)
    vim.wait(200)
    eq(1, lua("return T.notes_matching('not found')"), "messages about the missing server")
    eq("codila: error", lua("return require('codila').status()"), "status")
    local report = lua([[vim.cmd("checkhealth codila")
      local t = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), "\n"); vim.cmd("bwipe!"); return t]])
    assert(report:find("ERROR") and report:find("not found"), "the health report says so:\n" .. report)
  end)
end)

spec("no models: said once with the fix, no more requests until the configuration changes", function()
  alone([[{
    cmd = cmd, debounce_ms = 50,
    settings = { dlm = models .. "/no-such-model", ar = models .. "/ar", device = "cpu", spanCaps = { blockBody = 24 } },
  }]], nil, function()
    local path = tmp .. "/nomodels.py"
    vim.fn.writefile({ "def n(x)" }, path)
    lua("vim.cmd.edit(...)", path)
    wait_for("the failed load", function()
      return lua("return require('codila').status_info().paused") ~= nil
    end, 60000)
    wait_for("the message", function()
      return lua("return T.notes_matching('could not load the models')") >= 1
    end, 5000)
    keys("A:")
    vim.wait(300)
    keys("<BS>:")
    vim.wait(300)
    keys("<Esc>a<BS>:")
    vim.wait(300)
    eq(0, requests(), "requests while the models cannot be loaded")
    eq(1, lua("return T.notes_matching('could not load the models')"), "messages about the models")
    assert(lua("return T.notes_matching('Fix: ')") == 1, "the message gives the fix")
    eq("codila: error", lua("return require('codila').status()"), "status")
    keys("<Esc>")
    lua([[T.states = { require("codila").status_info().state }
          local models = ...; require("codila").configure({ dlm = models .. "/dlm" })]], models)
    wait_ready()
    eq({ "error", "loading", "ready" }, lua("return T.states"), "the status while the models load")
    keys("A<BS>:")
    wait_for("a suggestion once the models load", function()
      return ghost() ~= nil
    end)
  end)
end)

spec("CodilaGhost is visibly different in GUI and cterm, and the user's colours win", function()
  local hl = lua([[return vim.api.nvim_get_hl(0, { name = "CodilaGhost" })]])
  assert(hl.fg and hl.ctermfg and not hl.link, "CodilaGhost has GUI and cterm colours: " .. vim.inspect(hl))
  local masked = lua([[return vim.api.nvim_get_hl(0, { name = "CodilaMasked" })]])
  assert(masked.ctermfg and masked.ctermfg ~= hl.ctermfg, "CodilaMasked is dimmer: " .. vim.inspect(masked))
  lua([[vim.cmd("highlight CodilaGhost ctermfg=1 guifg=#ff0000"); require("codila.ghost").highlights()]])
  eq(1, lua([[return vim.api.nvim_get_hl(0, { name = "CodilaGhost" }).ctermfg]]), "the user's colour stays")
  lua([[vim.cmd("colorscheme default")]]) -- :hi clear, then codila's defaults again
  eq(hl.ctermfg, lua([[return vim.api.nvim_get_hl(0, { name = "CodilaGhost" }).ctermfg]]), "after :colorscheme")
end)

-- --- the runner ---------------------------------------------------------------------------------

local main = spawn()
local watchdog = vim.uv.new_timer()
local passed, failed, skipped = 0, 0, 0
for _, s in ipairs(specs) do
  if only and not vim.iter(ipairs(only)):any(function(_, p) return s.name:find(p) ~= nil end) then
    skipped = skipped + 1
  else
    if not pcall(lua, "return 1") then -- killed by the watchdog in the spec before
      stop(main)
      main = spawn()
    end
    child = main
    local timed_out = false
    watchdog:start(spec_timeout_ms, 0, function()
      timed_out = true
      for _, pid in pairs(pids) do
        vim.uv.kill(pid, "sigkill")
      end
    end)
    local t0 = vim.uv.now()
    local ok, err = pcall(function()
      keys("<Esc>") -- every spec starts in normal mode with the setup's options, whatever the one before left
      lua("T.reset()")
      s.fn()
    end)
    watchdog:stop()
    if timed_out then
      ok, err = false, ("spec timed out after %d s (CODILA_SPEC_TIMEOUT_S); last error: %s"):format(
        spec_timeout_ms / 1000, tostring(err))
    end
    local took = (vim.uv.now() - t0) / 1000
    if ok then
      passed = passed + 1
      print(("ok - %s (%.1f s)"):format(s.name, took))
    else
      failed = failed + 1
      print(("not ok - %s (%.1f s)\n    %s"):format(s.name, took, tostring(err)))
    end
    pcall(keys, "<Esc>")
  end
end
print("nvim " .. tostring(vim.version()))
print(("nvim: %d passed, %d failed%s"):format(passed, failed, skipped > 0 and (", %d skipped"):format(skipped) or ""))
for ch in pairs(pids) do
  stop(ch)
end
vim.fn.delete(tmp, "rf")
os.exit(failed == 0 and 0 or 1)
