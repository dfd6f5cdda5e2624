"""The command line: parse, call into the other packages, print. No logic of its own."""
