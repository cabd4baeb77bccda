-- End-to-end specs for the Neovim plugin against the real codila-lsp. Run from anywhere:
--
--   CODILA_TEST_MODELS=/tmp/tinymodels nvim --headless -u NONE -l editors/nvim/tests/run.lua
--
-- CODILA_TEST_MODELS holds dlm/ and ar/ model folders (the tests' tiny random pair:
-- python -c "import sys; sys.path.insert(0, 'tests'); from tiny_models import build_pair;
--            from pathlib import Path; build_pair(Path('/tmp/tinymodels'))").
-- CODILA_LSP is the server command (default `codila-lsp`), split on spaces.
--
-- The specs drive a second Neovim (--embed) over RPC, so insert mode, autocommands, timers and
-- mappings run as they do for a user; they type keys with nvim_input and read extmarks back.

local root = vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":p:h:h")
local models = assert(os.getenv("CODILA_TEST_MODELS"), "set CODILA_TEST_MODELS to a folder with dlm/ and ar/")
local cmd = vim.split(os.getenv("CODILA_LSP") or "codila-lsp", " ", { trimempty = true })
local tmp = vim.fn.tempname()
vim.fn.mkdir(tmp, "p")

local child = vim.fn.jobstart({ vim.v.progpath, "--embed", "--headless", "-u", "NONE", "-i", "NONE",
  "--cmd", "set rtp^=" .. vim.fn.fnameescape(root) }, { rpc = true })

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

local function wait_for(what, condition, ms)
  if not vim.wait(ms or 30000, condition, 20) then
    local seen = lua("return { lines = T.lines(), ghost = T.ghost(), drafts = T.drafts, logs = T.logs }")
    error(("timed out waiting for %s; the child has %s"):format(what, vim.inspect(seen)), 2)
  end
end

local function eq(expected, actual, what)
  if not vim.deep_equal(expected, actual) then
    error(("%s: expected %s, got %s"):format(what, vim.inspect(expected), vim.inspect(actual)), 2)
  end
end

-- In the child: set codila up, record every draft with the extmarks it left, and the server's logs.
lua([[
  local cmd, models = ...
  vim.cmd("filetype on")
  _G.T = { drafts = {}, logs = {}, response_delay = 0 }
  local log = vim.lsp.handlers["window/logMessage"]
  vim.lsp.handlers["window/logMessage"] = function(err, params, ctx)
    table.insert(T.logs, params.message)
    return log(err, params, ctx)
  end
  vim.api.nvim_create_autocmd("LspAttach", { callback = function(event)
    if T.wrapped then return end -- one client serves every buffer
    T.wrapped = true
    local client = vim.lsp.get_client_by_id(event.data.client_id)
    local draft = client.handlers["codila/draft"]
    client.handlers["codila/draft"] = function(err, params, ctx)
      draft(err, params, ctx)
      local marks = vim.api.nvim_buf_get_extmarks(0, vim.api.nvim_get_namespaces().codila, 0, -1, { details = true })
      table.insert(T.drafts, { id = params.id, text = params.text, done = params.done, marks = marks })
    end
    -- T.response_delay holds inline completion responses back (ms), as a busy editor might
    local request = client.request
    client.request = function(...)
      local args, n = { ... }, select("#", ...)
      local i = args[1] == client and 2 or 1 -- client:request (0.11+) or client.request (0.10)
      local handler = args[i + 2]
      if args[i] == "textDocument/inlineCompletion" and T.response_delay > 0 and handler then
        args[i + 2] = function(...)
          local r, m = { ... }, select("#", ...)
          vim.defer_fn(function() handler(unpack(r, 1, m)) end, T.response_delay)
        end
      end
      return request(unpack(args, 1, n))
    end
  end })
  -- the ghost text on screen, as the text it stands for (nil when none)
  function T.ghost()
    local marks = vim.api.nvim_buf_get_extmarks(0, vim.api.nvim_get_namespaces().codila, 0, -1, { details = true })
    if #marks == 0 then return nil end
    local d = marks[1][4]
    local lines = { d.virt_text and d.virt_text[1][1] or "" }
    for _, line in ipairs(d.virt_lines or {}) do table.insert(lines, line[1][1]) end
    return table.concat(lines, "\n")
  end
  function T.lines() return vim.api.nvim_buf_get_lines(0, 0, -1, false) end
  require("codila").setup({
    cmd = cmd,
    settings = { dlm = models .. "/dlm", ar = models .. "/ar", device = "cpu", spanCaps = { blockBody = 24 } },
    debounce_ms = 50,
    builtin = false, -- codila's own renderer, also on Neovim 0.12+
  })
]], cmd, models)

local function logged(pattern)
  return lua("local p = ...; return vim.iter(T.logs):any(function(m) return m:find(p) ~= nil end)", pattern)
end

local loaded = false
local function open(name, text)
  local path = tmp .. "/" .. name
  vim.fn.writefile(vim.split(text, "\n"), path)
  lua("vim.cmd.edit(...); T.drafts = {}", path)
  wait_for("codila-lsp to attach", function()
    return lua([[return #vim.lsp.get_clients({ bufnr = 0, name = "codila" }) == 1]])
  end)
  if not loaded then
    wait_for("the models to load", function()
      return logged("models loaded")
    end, 120000)
    loaded = true
  end
end

-- `text` as ghost text shows it: control characters as ^X (random tiny models write some)
local function shown(text)
  return table.concat(vim.tbl_map(vim.fn.strtrans, vim.split(text, "\n")), "\n")
end

local function final_draft()
  return lua("for _, d in ipairs(T.drafts) do if d.done then return d end end")
end

local specs = {}

specs["drafts grow in place as extmarks; Tab accepts the final text"] = function()
  lua("T.response_delay = 3000") -- Tab works from the final draft on, before the response
  open("grow.py", "def add(a, b):\n    return a + b\n\n\ndef scale(x, k)")
  keys("GA:") -- the last line becomes `def scale(x, k):`, the cursor at its end
  wait_for("the final suggestion", function()
    local done = final_draft()
    return done ~= nil and lua("return T.ghost()") == shown(done.text)
  end)
  local done = final_draft()
  local drafts = lua("return vim.tbl_filter(function(d) return not d.done end, T.drafts)")
  assert(#drafts >= 2, "expected the decode to stream several drafts, got " .. #drafts)
  local mark_id = drafts[1].marks[1] and drafts[1].marks[1][1]
  for i, draft in ipairs(drafts) do
    eq(1, #draft.marks, "extmarks after draft " .. i)
    eq(mark_id, draft.marks[1][1], "the extmark id after draft " .. i)
    eq({ 4, 16 }, { draft.marks[1][2], draft.marks[1][3] }, "the draft's position (end of `def scale(x, k):`)")
    local d = draft.marks[1][4]
    local ghost = { d.virt_text[1][1] }
    for _, line in ipairs(d.virt_lines or {}) do
      table.insert(ghost, line[1][1])
    end
    eq(shown(draft.text), table.concat(ghost, "\n"), "draft " .. i .. " as virt_text + virt_lines")
  end
  assert(drafts[1].text:find("⋯"), "the first draft shows masked tokens as ⋯: " .. drafts[1].text)
  assert(drafts[1].text:find("\n"), "a block body starts on a new line (virt_lines): " .. drafts[1].text)

  local before = lua("return T.lines()")
  keys("<Tab>")
  local expected = vim.split(table.concat(before, "\n") .. done.text, "\n")
  wait_for("the suggestion to be inserted", function()
    return vim.deep_equal(lua("return T.lines()"), expected)
  end, 2000)
  eq(nil, lua("return T.ghost()"), "ghost text after accepting")
  eq("i", lua("return vim.api.nvim_get_mode().mode"), "mode after accepting")
  eq({ #expected, #expected[#expected] }, lua("return vim.api.nvim_win_get_cursor(0)"), "cursor after accepting")
  vim.wait(1500) -- the held-back response arrives and must change nothing
  eq(expected, lua("return T.lines()"), "buffer after the late response")
  keys("<Esc>")
end

specs["Tab without a suggestion inserts a tab"] = function()
  open("tab.py", "x = 1")
  keys("o<Tab>")
  wait_for("the tab", function()
    return vim.deep_equal(lua("return T.lines()"), { "x = 1", "\t" })
  end, 5000)
  keys("<Esc>")
end

specs["typing cancels a stale decode; Esc dismisses the draft and cancels the decode"] = function()
  lua([[require("codila").configure({ spanCaps = { blockBody = 512 } }); T.logs = {}]]) -- long decodes
  wait_for("the new settings", function()
    return logged("caps=.*block_body:512")
  end, 5000)
  open("esc.py", "def f(n)")
  local function cancelled()
    return #lua([[return vim.tbl_filter(function(m) return m:find("block_body.*: cancelled") end, T.logs)]])
  end
  keys("A:")
  wait_for("a draft on screen", function()
    return lua("return T.ghost()") ~= nil
  end)
  local first = lua("return T.drafts[1].id")
  keys("<BS>:") -- same text, new request: the first one is stale
  wait_for("the first decode to be cancelled", function()
    return cancelled() == 1
  end)
  wait_for("the new request's draft on screen", function()
    local last = lua("return T.drafts[#T.drafts]")
    return last.id > first and lua("return T.ghost()") == shown(last.text)
  end)
  keys("<Esc>")
  wait_for("the second decode to be cancelled", function()
    return cancelled() == 2
  end)
  vim.wait(200)
  eq(nil, lua("return T.ghost()"), "ghost text after <Esc>")
  eq({ "def f(n):" }, lua("return T.lines()"), "buffer after <Esc>")
end

specs["moving the cursor dismisses the suggestion"] = function()
  open("move.py", "def g(n)")
  keys("A:")
  wait_for("ghost text", function()
    return lua("return T.ghost()") ~= nil
  end)
  keys("<Left>")
  wait_for("the ghost text to go", function()
    return lua("return T.ghost()") == nil
  end, 5000)
  vim.wait(200)
  eq(nil, lua("return T.ghost()"), "ghost text after moving")
  eq({ "def g(n):" }, lua("return T.lines()"), "buffer after moving")
  keys("<Esc>")
end

specs[":CodilaInfill replaces the visual selection, streaming drafts meanwhile"] = function()
  open("infill.py", "def add(a, b):\n    return a + b\n\nprint(add(1, 2))")
  keys("2G0wwv$:CodilaInfill<CR>") -- selects `a + b`
  local function expected()
    local done = final_draft()
    return done and "def add(a, b):\n    return " .. done.text .. "\n\nprint(add(1, 2))"
  end
  wait_for("the infill to be applied", function()
    return expected() ~= nil and table.concat(lua("return T.lines()"), "\n") == expected()
  end)
  local drafts = lua("return vim.tbl_filter(function(d) return not d.done end, T.drafts)")
  assert(#drafts >= 1 and #drafts[1].marks == 1, "the infill's drafts are shown as an extmark")
  eq({ 1, 11 }, { drafts[1].marks[1][2], drafts[1].marks[1][3] }, "the infill draft's position (start of `a + b`)")
  eq({ 1, 16 }, { drafts[1].marks[1][4].end_row, drafts[1].marks[1][4].end_col }, "the replaced text's end")
  wait_for("the draft to go", function()
    return lua("return T.ghost()") == nil
  end, 5000)
end

local names = vim.tbl_keys(specs)
table.sort(names)
local passed, failed = 0, 0
for _, name in ipairs(names) do
  keys("<Esc>") -- every spec starts in normal mode with defaults, whatever the one before left
  lua([[T.response_delay = 0; require("codila").configure({ spanCaps = { blockBody = 24 } })]])
  local ok, err = pcall(specs[name])
  if ok then
    passed = passed + 1
    print("ok - " .. name)
  else
    failed = failed + 1
    print("not ok - " .. name .. "\n    " .. tostring(err))
  end
end
print("nvim " .. tostring(vim.version()))
print(("nvim: %d passed, %d failed"):format(passed, failed))
vim.fn.jobstop(child)
vim.fn.delete(tmp, "rf")
os.exit(failed == 0 and 0 or 1)
