"""Where tokens live between requests and restarts: one `TokenStore` base, memory, file and Redis."""
