"""Message search: `GET /api/chat/search` over the messages a user can see now."""
