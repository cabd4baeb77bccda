from lsp_server.server import main

main()
