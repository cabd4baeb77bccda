-- The per-buffer state of codila's inline completion, in one place: the request in flight and the
-- suggestion or draft on screen, with what draws, drops and stops them.
--
-- Per buffer: `debounce` and `deadline` timers; the request in flight (`client`, `id`, `kind`
-- "inline" | "infill", its progress `token`, the `cursor` it was made at, `quiet`: a cycling
-- request whose drafts are not drawn, `restore`: undoes its `suggestions` setting); the ghost
-- text's extmark (`mark`); the suggestions (`items` = { {range, text} }, `index`), whether more
-- were asked for (`cycled`), and the changedtick of codila's own last edit (`own_tick`).

local M = {}

local ghost = require("codila.ghost")
local status = require("codila.status")
local util = require("codila.util")

local buffers = {}

--- The state of `bufnr`, made on first use.
function M.of(bufnr)
  local st = buffers[bufnr]
  if not st then
    st = { debounce = vim.uv.new_timer(), deadline = vim.uv.new_timer() }
    buffers[bufnr] = st
  end
  return st
end

--- The state of `bufnr` if codila has one (nil for a buffer it never saw).
function M.get(bufnr)
  return buffers[bufnr]
end

--- Every buffer with a state: `for bufnr, st in state.each() do`.
function M.each()
  return pairs(buffers)
end

--- The state of `bufnr` and the suggestion on screen there (nil when none).
function M.current(bufnr)
  local st = buffers[bufnr]
  return st, st and st.items and st.items[st.index]
end

-- --- drawing and dropping ---------------------------------------------------------------------

function M.hide(bufnr, st)
  st.mark, st.items, st.index = nil, nil, nil
  ghost.hide(bufnr)
  status.suggestion(nil, nil)
end

function M.render(bufnr, st)
  local item = st.items[st.index]
  st.mark = ghost.show(bufnr, st.mark, item.range, item.text)
  status.suggestion(st.index, #st.items)
end

--- Shows finished suggestions (the first of them) and makes them acceptable.
function M.offer(bufnr, st, items)
  items = vim.tbl_filter(function(item)
    return item.text ~= ""
  end, items)
  if #items == 0 then
    M.hide(bufnr, st)
    return
  end
  st.items, st.index = items, 1
  M.render(bufnr, st)
end

--- The request in flight is over (answered or cancelled): no id, no time cap, its settings undone.
function M.request_over(st)
  st.id = nil
  st.deadline:stop()
  if st.restore then
    st.restore()
    st.restore = nil
  end
  status.idle()
end

--- Ends the request in flight, if any, without touching the ghost text.
function M.stop_request(st)
  st.debounce:stop()
  if not st.id then
    return
  end
  local client, id = st.client, st.id
  M.request_over(st)
  if client and not util.call(client, "is_stopped") then
    util.call(client, "cancel_request", id) -- the server stops decoding within an iteration
  end
end

--- Drops the suggestion or draft and cancels the request in flight.
function M.dismiss(bufnr)
  local st = buffers[bufnr]
  if not st then
    return
  end
  M.stop_request(st)
  st.cursor, st.cycled = nil, false
  M.hide(bufnr, st)
end

--- The buffer is unloaded: dismiss, close its timers and forget it.
function M.forget(bufnr)
  local st = buffers[bufnr]
  if not st then
    return
  end
  M.dismiss(bufnr)
  st.debounce:close()
  st.deadline:close()
  buffers[bufnr] = nil
end

return M
