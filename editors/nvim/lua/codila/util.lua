-- Small helpers shared by the modules: client method calls across Neovim versions, and messages
-- to the user that never interrupt what is running and are said once.

local M = {}

M.has_011 = vim.fn.has("nvim-0.11") == 1

--- Neovim 0.11 made client functions methods (the 0.10 form is deprecated there).
function M.call(client, name, ...)
  if M.has_011 then
    return client[name](client, ...)
  end
  return client[name](...)
end

--- Tells the user `msg` (prefixed "codila: "). Always scheduled: an error message raised inside an
--- autocommand (FileType, say) would abort the user's own later autocommands for that event.
function M.notify(msg, level)
  vim.schedule(function()
    vim.notify("codila: " .. msg, level or vim.log.levels.WARN, { title = "codila" })
  end)
end

local said = {}

--- `notify`, unless a message with the same key was already said (and not forgotten since).
--- Returns whether it was said now.
function M.notify_once(key, msg, level)
  if said[key] then
    return false
  end
  said[key] = true
  M.notify(msg, level)
  return true
end

--- Lets messages be said again (after the user changed the configuration or restarted the server).
function M.forget()
  said = {}
end

return M
