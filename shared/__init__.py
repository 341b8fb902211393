"""Code shared by every Cadencia service: contracts, bus, storage, settings, logging, errors."""
