"""A local exchange for demos and tests: a venue-neutral engine (``exchange``) under front-ends
that speak each venue's real wire protocol."""
