"""One module per grant: how it fetches a token and whether its tokens persist and rotate."""
