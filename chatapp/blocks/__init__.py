"""Blocking: who blocked whom, and the checks that keep a blocked user away (direct messages,
group adds, presence, typing)."""
