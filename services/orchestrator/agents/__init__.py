"""Agent queues: which voice dispatches are bridged to agents, and their outcomes on the timeline."""
