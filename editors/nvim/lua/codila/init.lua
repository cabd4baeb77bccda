-- codila for Neovim: starts codila-lsp for Python buffers and shows its inline completions. On
-- Neovim 0.12+ that is vim.lsp.inline_completion; otherwise (or with `builtin = false`) codila draws
-- the ghost text itself, including the draft the server streams (`codila/draft`) while it decodes.
-- `:CodilaInfill` infills a visual selection (the server applies the edit).

local M = {}

local api = vim.api
local ns = api.nvim_create_namespace("codila")
local has_011 = vim.fn.has("nvim-0.11") == 1
local INFILL_COMMAND = "codila.infillSelection"
local REQUEST_CANCELLED = -32800

local defaults = {
  cmd = { "codila-lsp" }, -- or e.g. { "/path/to/venv/bin/python", "-m", "lsp_server" }
  settings = {}, -- server settings (README "Settings"), e.g. { device = "cuda", blockSize = 4 }
  filetypes = { "python" },
  debounce_ms = 200, -- idle time in insert mode before a completion is requested
  accept_key = "<Tab>", -- accepts a visible suggestion, else acts as usual; false: map M.accept yourself
  builtin = true, -- use vim.lsp.inline_completion where Neovim has it (0.12+); it shows no live drafts
}
local config = vim.deepcopy(defaults)
local warned_missing = false

-- Codila's own renderer, per buffer: the debounce timer and the request in flight (client, id, kind,
-- cursor it was made at), the extmark that shows its draft, and the finished suggestion (item).
local buffers = {}

-- Neovim 0.11 made client functions methods (the 0.10 form is deprecated there).
local function call(client, name, ...)
  if has_011 then
    return client[name](client, ...)
  end
  return client[name](...)
end

local function uses_builtin()
  return config.builtin and vim.lsp.inline_completion ~= nil
end

local function codila_client(bufnr)
  return vim.lsp.get_clients({ bufnr = bufnr, name = "codila" })[1]
end

local function state(bufnr)
  buffers[bufnr] = buffers[bufnr] or {}
  return buffers[bufnr]
end

--- Ghost text for `text`, which will replace `range` (LSP, UTF-8 columns): the first line inline at
--- the range start, the others as virtual lines below; the replaced text is struck through. The same
--- extmark id is set again for every draft, so the ghost text grows in place.
local function show(bufnr, st, range, text)
  local lines = vim.split(text, "\n", { plain = true })
  local virt_lines = {}
  for i = 2, #lines do
    virt_lines[#virt_lines + 1] = { { lines[i], "CodilaGhost" } }
  end
  st.mark = api.nvim_buf_set_extmark(bufnr, ns, range.start.line, range.start.character, {
    id = st.mark,
    virt_text = { { lines[1], "CodilaGhost" } },
    virt_text_pos = "inline",
    virt_lines = virt_lines,
    end_row = range["end"].line,
    end_col = range["end"].character,
    hl_group = "CodilaReplaced",
    hl_mode = "combine",
    strict = false,
  })
end

local function hide(bufnr, st)
  st.mark, st.item = nil, nil
  if api.nvim_buf_is_valid(bufnr) then
    api.nvim_buf_clear_namespace(bufnr, ns, 0, -1)
  end
end

--- Drops the suggestion and cancels the request in flight (the server stops decoding).
local function dismiss(bufnr)
  local st = buffers[bufnr]
  if not st then
    return
  end
  if st.timer then
    st.timer:stop()
  end
  if st.id then
    call(st.client, "cancel_request", st.id)
  end
  st.id, st.cursor = nil, nil
  hide(bufnr, st)
end

--- Sends a request whose drafts this buffer shows; `on_result` gets the result unless the request
--- was superseded, dismissed or failed.
local function send(bufnr, client, kind, method, params, on_result)
  dismiss(bufnr)
  local st = state(bufnr)
  local ok, id
  ok, id = call(client, "request", method, params, function(err, result)
    if st.id ~= id then
      return
    end
    st.id = nil
    if err then
      hide(bufnr, st)
      if err.code ~= REQUEST_CANCELLED then
        vim.notify("codila: " .. err.message, vim.log.levels.ERROR)
      end
      return
    end
    on_result(result)
  end, bufnr)
  if ok then
    st.client, st.id, st.kind = client, id, kind
  end
  return st
end

--- Shows a finished inline suggestion and makes it acceptable.
local function offer(bufnr, st, range, text)
  if text == "" then
    hide(bufnr, st)
    return
  end
  show(bufnr, st, range, text)
  st.item = { range = range, text = text }
end

--- `codila/draft` notifications: shown while their request is the buffer's current one. The final
--- draft equals the result, so an inline suggestion is acceptable from it on, not only once the
--- response has arrived (a Tab in between would otherwise insert a tab under a complete ghost text).
local function on_draft(_, draft, ctx)
  for bufnr, st in pairs(buffers) do
    if st.id == draft.id and st.client.id == ctx.client_id then
      if not draft.done then
        show(bufnr, st, draft.range, draft.text)
      elseif st.kind == "inline" then
        offer(bufnr, st, draft.range, draft.text)
      end -- an infill's final text arrives as the server's workspace edit
      return
    end
  end
end

local function request_inline(bufnr)
  local client = codila_client(bufnr)
  if not client or api.nvim_get_current_buf() ~= bufnr or not vim.startswith(api.nvim_get_mode().mode, "i")
    or vim.fn.pumvisible() == 1 then
    return
  end
  local row, col = unpack(api.nvim_win_get_cursor(0))
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(bufnr) },
    position = { line = row - 1, character = col },
    context = { triggerKind = 2 }, -- Automatic
  }
  local st
  st = send(bufnr, client, "inline", "textDocument/inlineCompletion", params, function(result)
    local item = result and (result.items or result)[1]
    if item then
      offer(bufnr, st, item.range, item.insertText)
    else
      hide(bufnr, st)
    end
  end)
  st.cursor = { row, col }
end

--- Accepts the visible suggestion; false when there is none (so a mapping can fall back).
function M.accept(bufnr)
  bufnr = bufnr or api.nvim_get_current_buf()
  if uses_builtin() then
    return vim.lsp.inline_completion.get({ bufnr = bufnr })
  end
  local st = buffers[bufnr]
  local item = st and st.item
  if not item then
    return false
  end
  vim.schedule(function() -- not inside the <expr> mapping, where the text is locked
    dismiss(bufnr)
    local r = item.range
    local lines = vim.split(item.text, "\n", { plain = true })
    api.nvim_buf_set_text(bufnr, r.start.line, r.start.character, r["end"].line, r["end"].character, lines)
    local last = #lines == 1 and r.start.character + #lines[1] or #lines[#lines]
    api.nvim_win_set_cursor(0, { r.start.line + #lines, last })
  end)
  return true
end

--- Codila's own renderer: request after `debounce_ms` of typing, dismiss on moves and on leaving.
local function watch(bufnr)
  local st = state(bufnr)
  if st.timer then
    return -- already watched (the client attached again)
  end
  st.timer = vim.uv.new_timer()
  local group = api.nvim_create_augroup("codila_buffer_" .. bufnr, { clear = true })
  api.nvim_create_autocmd("TextChangedI", {
    group = group,
    buffer = bufnr,
    callback = function()
      dismiss(bufnr)
      st.timer:start(config.debounce_ms, 0, vim.schedule_wrap(function()
        request_inline(bufnr)
      end))
    end,
  })
  api.nvim_create_autocmd("CursorMovedI", {
    group = group,
    buffer = bufnr,
    callback = function()
      local row, col = unpack(api.nvim_win_get_cursor(0))
      if st.cursor and (st.cursor[1] ~= row or st.cursor[2] ~= col) then
        dismiss(bufnr)
      end
    end,
  })
  api.nvim_create_autocmd({ "InsertLeave", "BufLeave" }, {
    group = group,
    buffer = bufnr,
    callback = function()
      if st.kind == "inline" then
        dismiss(bufnr)
      end
    end,
  })
  api.nvim_create_autocmd("BufUnload", {
    group = group,
    buffer = bufnr,
    callback = function()
      dismiss(bufnr)
      st.timer:close()
      buffers[bufnr] = nil
      api.nvim_del_augroup_by_id(group)
    end,
  })
end

local function on_attach(_, bufnr)
  if uses_builtin() then
    vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
  else
    watch(bufnr)
  end
  if config.accept_key then
    vim.keymap.set("i", config.accept_key, function()
      return M.accept(bufnr) and "" or config.accept_key
    end, { buffer = bufnr, expr = true, desc = "codila: accept the suggestion" })
  end
end

local function start(bufnr)
  if vim.fn.executable(config.cmd[1]) ~= 1 then
    if not warned_missing then
      warned_missing = true
      vim.notify(("codila: `%s` not found. Install codila (`pip install -e .` in the codila repository) and "
        .. "put its environment's bin/ on PATH, or give the full path: "
        .. "require('codila').setup({ cmd = { '/path/to/venv/bin/codila-lsp' } })"):format(config.cmd[1]),
        vim.log.levels.ERROR)
    end
    return
  end
  local capabilities = vim.lsp.protocol.make_client_capabilities()
  -- offer UTF-8 only: LSP columns are then Neovim's byte columns
  capabilities.general = vim.tbl_extend("force", capabilities.general or {}, { positionEncodings = { "utf-8" } })
  vim.lsp.start({
    name = "codila",
    cmd = config.cmd,
    root_dir = vim.fs.root(bufnr, { "pyproject.toml", "setup.py", ".git" }) or vim.fn.getcwd(),
    init_options = next(config.settings) and config.settings or vim.empty_dict(),
    capabilities = capabilities,
    handlers = { ["codila/draft"] = on_draft },
    on_attach = on_attach,
  }, { bufnr = bufnr })
end

--- The LSP range of `:CodilaInfill`'s selection: the last visual selection when the command's lines
--- are its lines, else whole lines; without a range, the cursor (an insertion point).
local function infill_range(args)
  if args.range == 0 then
    local row, col = unpack(api.nvim_win_get_cursor(0))
    local here = { line = row - 1, character = col }
    return { start = here, ["end"] = here }
  end
  local first, last = vim.fn.getpos("'<"), vim.fn.getpos("'>")
  local last_line = vim.fn.getline(args.line2)
  if first[2] ~= args.line1 or last[2] ~= args.line2 or vim.fn.visualmode() == "V" then
    return { start = { line = args.line1 - 1, character = 0 }, ["end"] = { line = args.line2 - 1, character = #last_line } }
  end
  local last_char = vim.fn.strcharpart(last_line:sub(last[3]), 0, 1) -- the selection ends after it
  return {
    start = { line = first[2] - 1, character = first[3] - 1 },
    ["end"] = { line = last[2] - 1, character = math.min(last[3] - 1 + #last_char, #last_line) },
  }
end

local function infill(args)
  local bufnr = api.nvim_get_current_buf()
  local client = codila_client(bufnr)
  if not client then
    vim.notify("codila: codila-lsp is not attached to this buffer (is it a Python buffer? :checkhealth vim.lsp)",
      vim.log.levels.ERROR)
    return
  end
  local params = {
    command = INFILL_COMMAND,
    arguments = { { textDocument = { uri = vim.uri_from_bufnr(bufnr) }, range = infill_range(args) } },
  }
  local st
  st = send(bufnr, client, "infill", "workspace/executeCommand", params, function()
    hide(bufnr, st) -- the server has applied the edit (workspace/applyEdit) before it answers
  end)
end

--- Sends new server settings (merged into the current ones) to the running servers.
function M.configure(settings)
  config.settings = vim.tbl_deep_extend("force", config.settings, settings)
  for _, client in ipairs(vim.lsp.get_clients({ name = "codila" })) do
    call(client, "notify", "workspace/didChangeConfiguration", { settings = { codila = config.settings } })
  end
end

function M.setup(opts)
  config = vim.tbl_extend("force", vim.deepcopy(defaults), opts or {})
  api.nvim_set_hl(0, "CodilaGhost", { link = "Comment", default = true })
  api.nvim_set_hl(0, "CodilaReplaced", { strikethrough = true, default = true })
  local group = api.nvim_create_augroup("codila", { clear = true })
  api.nvim_create_autocmd("FileType", {
    group = group,
    pattern = config.filetypes,
    callback = function(event)
      start(event.buf)
    end,
  })
  for _, bufnr in ipairs(api.nvim_list_bufs()) do -- buffers opened before setup (lazy loading)
    if api.nvim_buf_is_loaded(bufnr) and vim.tbl_contains(config.filetypes, vim.bo[bufnr].filetype) then
      start(bufnr)
    end
  end
  api.nvim_create_user_command("CodilaInfill", infill, {
    range = true,
    desc = "codila: infill the visual selection (or lines, or at the cursor)",
  })
end

return M
