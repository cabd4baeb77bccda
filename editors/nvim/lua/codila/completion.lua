-- Codila's own inline completion, per buffer: requests after a typing pause (or on the trigger
-- key), the live draft while the server decodes (`codila/draft`), the suggestions it answers
-- with, cycling through several, the request time cap, enabling, and `:CodilaInfill`. The
-- per-buffer state and its drawing are in state.lua, accepting a suggestion in accept.lua.

local M = {}

local api = vim.api
local config = require("codila.config")
local ghost = require("codila.ghost")
local state = require("codila.state")
local status = require("codila.status")
local util = require("codila.util")

local REQUEST_CANCELLED = -32800
local INFILL_COMMAND = "codila.infillSelection"
M.TOKEN_PREFIX = "codila-inline-" -- workDoneTokens of codila's requests (the server reports decoding there)

local function server()
  return require("codila.server")
end

local function opts()
  return config.options
end

local tokens = 0

-- Enabled: globally, per filetype, per buffer (`vim.b.codila_enabled`, true or false, wins over
-- the filetype).
M.global_enabled = true
local disabled_filetypes = {}

function M.enabled(bufnr)
  bufnr = bufnr or api.nvim_get_current_buf()
  if not M.global_enabled then
    return false
  end
  local here = vim.b[bufnr].codila_enabled
  if here ~= nil then
    return here == true or here == 1
  end
  return not disabled_filetypes[vim.bo[bufnr].filetype]
end

--- Whether a typing pause asks for a suggestion in `bufnr` now.
local function automatic(bufnr)
  return opts().auto_trigger and M.enabled(bufnr) and not server().blocked and not server().loading()
end

-- --- requests ---------------------------------------------------------------------------------

local function timeout(bufnr, st, id, ms, keep)
  if ms <= 0 then
    return
  end
  st.deadline:start(ms, 0, vim.schedule_wrap(function()
    if st.id ~= id then
      return
    end
    if keep then
      state.stop_request(st) -- the suggestion on screen stays
    else
      state.dismiss(bufnr)
    end
    util.notify_once("timeout", ("a %s took longer than %d ms and was cancelled; raise `%s` in setup() (0: no cap) "
      .. "or ask for fewer tokens (settings.spanCaps). Said once per session."):format(
        st.kind == "infill" and "selection infill" or "completion", ms,
        st.kind == "infill" and "infill_timeout_ms" or "request_timeout_ms"))
  end))
end

--- Sends a request whose drafts this buffer shows; `on_result` gets the result unless the request
--- was superseded, dismissed, timed out or failed. `keep`: the suggestion on screen stays.
--- `decodes`: how many decodes the server runs for it (the time cap grows with them).
local function send(bufnr, client, kind, method, params, on_result, keep, decodes)
  local st = state.of(bufnr)
  if keep then
    state.stop_request(st)
  else
    state.dismiss(bufnr)
  end
  local ok, id
  ok, id = util.call(client, "request", method, params, function(err, result)
    if st.id ~= id then
      return
    end
    state.request_over(st)
    if err then
      if not keep then
        state.hide(bufnr, st)
      end
      if err.code ~= REQUEST_CANCELLED then
        server().request_failed(err)
      end
      return
    end
    on_result(result)
  end, bufnr)
  if not ok then
    return nil
  end
  st.client, st.id, st.kind, st.token, st.quiet = client, id, kind, params.workDoneToken, false
  status.decoding(nil)
  local cap = kind == "infill" and opts().infill_timeout_ms or opts().request_timeout_ms
  timeout(bufnr, st, id, cap * (decodes or 1), keep)
  return st
end

local function to_items(result, position)
  local items = {}
  for _, item in ipairs(result and (result.items or result) or {}) do
    local text = item.insertText
    if type(text) == "table" then
      text = text.value -- a snippet: its text as it is
    end
    if type(text) == "string" then
      items[#items + 1] = { text = text, range = item.range or { start = position, ["end"] = position } }
    end
  end
  return items
end

--- Asks for an inline completion at the cursor. `how`: manual (the user asked: triggerKind
--- Invoked, also while completions pause), count (ask the server for that many suggestions),
--- keep / quiet (cycling: the suggestion stays, drafts are not drawn), on_items (instead of offering).
local function request(bufnr, how)
  how = how or {}
  local client = server().client(bufnr)
  if not client or api.nvim_get_current_buf() ~= bufnr or not vim.startswith(api.nvim_get_mode().mode, "i") then
    return
  end
  if not how.manual and (vim.fn.pumvisible() == 1 or not automatic(bufnr)) then
    return
  end
  local row, col = unpack(api.nvim_win_get_cursor(0))
  tokens = tokens + 1
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(bufnr) },
    position = { line = row - 1, character = col },
    context = { triggerKind = how.manual and 1 or 2 }, -- Invoked | Automatic
    workDoneToken = M.TOKEN_PREFIX .. tokens,
  }
  local restore = how.count and server().ask_suggestions(client, how.count)
  local st
  st = send(bufnr, client, "inline", "textDocument/inlineCompletion", params, function(result)
    local items = to_items(result, params.position)
    if how.on_items then
      how.on_items(items)
    else
      state.offer(bufnr, st, items)
    end
  end, how.keep, how.count)
  if st then
    st.cursor, st.quiet, st.restore = { row, col }, how.quiet or false, restore or nil
    st.tick = api.nvim_buf_get_changedtick(bufnr)
  elseif restore then
    restore()
  end
end

--- The manual trigger: a suggestion now, also where automatic ones are off.
function M.trigger(bufnr)
  bufnr = bufnr or api.nvim_get_current_buf()
  if not M.enabled(bufnr) then
    util.notify("suggestions are off here (:Codila enable)", vim.log.levels.INFO)
    return true
  end
  if server().blocked then
    util.notify(server().blocked_message(), vim.log.levels.ERROR)
  end
  request(bufnr, { manual = true })
  return true
end

--- `codila/draft` notifications: shown while their request is the buffer's current one. The final
--- draft (`done`) equals the result and carries the decode's statistics; an inline suggestion is
--- acceptable from it on, not only once the response is read (a Tab in between is not lost).
function M.on_draft(_, draft, ctx)
  for bufnr, st in state.each() do
    if st.id ~= nil and st.id == draft.id and st.client and st.client.id == ctx.client_id then
      if draft.done then
        if draft.stats then
          status.finished(draft.stats)
        end
        if st.kind == "inline" and not st.quiet then
          state.offer(bufnr, st, { { range = draft.range, text = draft.text } })
        end -- an infill's final text arrives as the server's workspace edit
      elseif opts().live_draft and not st.quiet then
        st.items, st.index = nil, nil
        st.mark = ghost.show(bufnr, st.mark, draft.range, draft.text, opts().placeholder, draft.masks)
      end
      return
    end
  end
end

--- `$/progress` for one of codila's requests: the decode's percentage.
function M.on_progress(token, value)
  for _, st in state.each() do
    if st.id and st.token == token then
      if value.kind ~= "end" then
        status.decoding(value.percentage)
      end
      return
    end
  end
end

--- The models finished loading: ask now if the user is typing in a codila buffer.
function M.models_ready()
  local bufnr = api.nvim_get_current_buf()
  if state.get(bufnr) and vim.startswith(api.nvim_get_mode().mode, "i") and automatic(bufnr) then
    request(bufnr)
  end
end

--- The server `client_id` exited: drop its drafts, suggestions and requests. Returns whether one
--- of its requests was in flight.
function M.client_exited(client_id)
  local decoding = false
  for bufnr, st in state.each() do
    if st.client and st.client.id == client_id then
      decoding = decoding or st.id ~= nil
      st.id = nil
      st.deadline:stop()
      st.restore = nil
      st.debounce:stop()
      st.cursor, st.cycled = nil, false
      state.hide(bufnr, st)
    end
  end
  status.idle()
  return decoding
end

-- --- cycling ----------------------------------------------------------------------------------

--- Shows the next (`step` 1) or previous (-1) suggestion. With only one, asks the server once for
--- `cycle_suggestions` of them (the server setting `suggestions`), keeping the one on screen; if
--- no other comes back, nothing changes. Without a suggestion, asks for one.
function M.cycle(bufnr, step)
  bufnr = bufnr or api.nvim_get_current_buf()
  local st = state.get(bufnr)
  if not (st and st.items) then
    if st and st.id then
      return true -- a decode is under way
    end
    return M.trigger(bufnr)
  end
  vim.schedule(function()
    if not st.items then
      return
    end
    if #st.items > 1 then
      st.index = (st.index - 1 + step) % #st.items + 1
      state.render(bufnr, st)
    elseif not st.cycled and not st.id then
      st.cycled = true
      local shown = st.items[1]
      request(bufnr, {
        manual = true, keep = true, quiet = true, count = math.max(2, opts().cycle_suggestions),
        on_items = function(items)
          if st.items == nil or st.items[1] ~= shown then
            return -- accepted or dismissed meanwhile
          end
          local all, seen = { shown }, { [shown.text] = true }
          for _, item in ipairs(items) do
            if item.text ~= "" and not seen[item.text] then
              seen[item.text] = true
              all[#all + 1] = item
            end
          end
          st.items = all
          if #all > 1 then
            st.index = step > 0 and 2 or #all
            state.render(bufnr, st)
          end
        end,
      })
    end
  end)
  return true
end

--- The dismiss key: true if there was something to dismiss.
function M.dismiss_key(bufnr)
  bufnr = bufnr or api.nvim_get_current_buf()
  local st = state.get(bufnr)
  if not (st and (st.items or st.id or st.mark)) then
    return false
  end
  vim.schedule(function()
    state.dismiss(bufnr)
  end)
  return true
end

-- --- enabling ---------------------------------------------------------------------------------

--- Sets enabled to `value` (nil: toggles) for `scope`: nil (everywhere), "buffer" or "filetype"
--- (of `bufnr`). Returns the new value.
function M.set_enabled(value, scope, bufnr)
  bufnr = bufnr or api.nvim_get_current_buf()
  if scope == "buffer" then
    if value == nil then
      value = not M.enabled(bufnr)
    end
    vim.b[bufnr].codila_enabled = value
  elseif scope == "filetype" then
    local ft = vim.bo[bufnr].filetype
    if value == nil then
      value = disabled_filetypes[ft] == true
    end
    disabled_filetypes[ft] = not value or nil
  else
    if value == nil then
      value = not M.global_enabled
    end
    M.global_enabled = value
  end
  for b in state.each() do
    if not M.enabled(b) then
      state.dismiss(b)
    end
  end
  status.suggestion(nil, nil) -- redraws the statuslines
  return value
end

-- --- watching a buffer ------------------------------------------------------------------------

--- Requests after `debounce_ms` of typing, dismisses on moves and on leaving insert mode.
function M.watch(bufnr)
  local st = state.of(bufnr)
  if st.group then
    return -- already watched (the client attached again)
  end
  st.group = api.nvim_create_augroup("codila_buffer_" .. bufnr, { clear = true })
  api.nvim_create_autocmd("TextChangedI", {
    group = st.group,
    buffer = bufnr,
    callback = function()
      local tick = api.nvim_buf_get_changedtick(bufnr)
      if st.own_tick == tick then
        return -- codila's own edit (a word or line accepted): the rest stays on screen
      end
      if st.tick == tick and (st.id or st.items) then
        return -- a change made before the request (the trigger key typed right after it)
      end
      state.dismiss(bufnr)
      if automatic(bufnr) then
        st.debounce:start(opts().debounce_ms, 0, vim.schedule_wrap(function()
          request(bufnr)
        end))
      end
    end,
  })
  api.nvim_create_autocmd("CursorMovedI", {
    group = st.group,
    buffer = bufnr,
    callback = function()
      local row, col = unpack(api.nvim_win_get_cursor(0))
      if st.cursor and (st.cursor[1] ~= row or st.cursor[2] ~= col) then
        state.dismiss(bufnr)
      end
    end,
  })
  api.nvim_create_autocmd({ "InsertLeave", "BufLeave" }, {
    group = st.group,
    buffer = bufnr,
    callback = function()
      if st.kind ~= "infill" then
        state.dismiss(bufnr)
      end
    end,
  })
  api.nvim_create_autocmd("BufUnload", {
    group = st.group,
    buffer = bufnr,
    callback = function()
      state.forget(bufnr)
      require("codila.keys").forget(bufnr)
      api.nvim_del_augroup_by_id(st.group)
    end,
  })
end

-- --- :CodilaInfill ----------------------------------------------------------------------------

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

function M.infill(args)
  local bufnr = api.nvim_get_current_buf()
  local client = server().client(bufnr)
  if not client then
    util.notify("codila-lsp is not attached to this buffer (is it a Python buffer? :checkhealth codila)",
      vim.log.levels.ERROR)
    return
  end
  state.of(bufnr)
  local params = {
    command = INFILL_COMMAND,
    arguments = { { textDocument = { uri = vim.uri_from_bufnr(bufnr) }, range = infill_range(args) } },
  }
  local st
  st = send(bufnr, client, "infill", "workspace/executeCommand", params, function()
    state.hide(bufnr, st) -- the server has applied the edit (workspace/applyEdit) before it answers
  end)
end

return M
