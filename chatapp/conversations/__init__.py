"""Conversations: direct (one per pair) and group, with members, roles and read markers."""
