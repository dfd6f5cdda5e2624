"""The aiohttp application and its life: runtime state, middleware, admin, reload, listeners, workers."""
