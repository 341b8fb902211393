"""What every orchestrator page shares: the navigation, the look and the small SVG charts (``/ui/…``)."""
