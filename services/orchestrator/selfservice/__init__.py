"""Self-service: a signed link in a message opens a page where the debtor pays, promises or signs a plan."""
