"""The change feed: every change of a conversation, by `version`, for catching up."""
