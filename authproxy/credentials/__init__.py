"""How a route gets the token it injects: grants, the token endpoint, the credential and its states.

Import from the submodules (`credentials.build`, `credentials.credential`, ...): this package's
`__init__` stays empty so that importing any part never pulls in the rest.
"""
