"""Dead letters: every service's poison messages, kept for ops to inspect and replay over HTTP."""
