"""Language server for codila: inline completion backed by the CoDiLA engine."""
