"""Developer and operator tooling: the `cadencia` command (serve, migrate, run), the local supervisor
behind `make run`, and the demo portfolio it publishes. No service imports from here."""
