"""HTTP: thin aiohttp handlers (validate, one service call, render); the only users of aiohttp.web."""
