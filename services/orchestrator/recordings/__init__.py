"""Call recordings: the jurisdiction's notice on recorded calls, and recording metadata on the timeline."""
