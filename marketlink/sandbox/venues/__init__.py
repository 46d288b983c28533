"""Venue front-ends of the sandbox: each speaks one venue's real wire protocol over the shared,
venue-neutral exchange engine, so clients written for that venue run against it unchanged."""
