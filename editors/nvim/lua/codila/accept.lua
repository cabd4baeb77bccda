-- Accepting the inline suggestion on screen: all of it, or its next word or line (the rest stays
-- on screen as the suggestion, replacing the same text).

local M = {}

local api = vim.api
local state = require("codila.state")

--- The suggestion's next word: leading white space (line breaks too), then a run of word
--- characters or a run of other non-blank characters.
local function next_word(text)
  local space = text:match("^%s*")
  local rest = text:sub(#space + 1)
  return space .. (rest:match("^[%w_\128-\255]+") or rest:match("^[^%w_%s\128-\255]+") or "")
end

--- The suggestion's next line: up to the end of its first non-blank line (a body that starts
--- with a line break takes the break and the next line), without the line break after it.
local function next_line(text)
  local blank = text:match("^%s*\n") or ""
  return blank .. text:sub(#blank + 1):match("^[^\n]*")
end

--- Inserts the whole `item` (replacing its range) and puts the cursor after it.
local function insert_all(bufnr, item)
  state.dismiss(bufnr)
  local r = item.range
  local lines = vim.split(item.text, "\n", { plain = true })
  api.nvim_buf_set_text(bufnr, r.start.line, r.start.character, r["end"].line, r["end"].character, lines)
  local col = #lines == 1 and r.start.character + #lines[1] or #lines[#lines]
  api.nvim_win_set_cursor(0, { r.start.line + #lines, col })
end

--- Inserts `part`, the start of `item`'s text, at its range start; the rest stays as the
--- suggestion (still replacing the same text, now after the inserted part).
local function insert_part(bufnr, st, item, part)
  local s, e = item.range.start, item.range["end"]
  local lines = vim.split(part, "\n", { plain = true })
  state.stop_request(st) -- a cycling request for the old position is stale now
  api.nvim_buf_set_text(bufnr, s.line, s.character, s.line, s.character, lines)
  st.own_tick = api.nvim_buf_get_changedtick(bufnr) -- not a change to answer with a new request
  local added = #lines - 1
  local start = { line = s.line + added, character = (added == 0 and s.character or 0) + #lines[#lines] }
  local finish = {
    line = e.line + added,
    character = e.line == s.line and start.character + (e.character - s.character) or e.character,
  }
  st.cursor = { start.line + 1, start.character }
  api.nvim_win_set_cursor(0, st.cursor)
  st.items, st.index, st.cycled = { { range = { start = start, ["end"] = finish }, text = item.text:sub(#part + 1) } }, 1, false
  state.render(bufnr, st)
end

--- Accepts the visible suggestion, all of it or (`part` "word" | "line") its next word or line;
--- false when there is none (so a mapping can fall back). The edit happens just after (mappings
--- run where text is locked).
function M.accept(bufnr, part)
  bufnr = bufnr or api.nvim_get_current_buf()
  local _, shown = state.current(bufnr)
  if not shown then
    return false
  end
  vim.schedule(function()
    -- the suggestion on screen now: the response may have replaced the final draft's meanwhile
    local st, item = state.current(bufnr)
    if not item or not api.nvim_buf_is_valid(bufnr) then
      return
    end
    local piece = part == "word" and next_word(item.text) or part == "line" and next_line(item.text) or item.text
    if piece == "" or not item.text:sub(#piece + 1):find("%S") then
      insert_all(bufnr, item)
    else
      insert_part(bufnr, st, item, piece)
    end
  end)
  return true
end

return M
