"""The researcher agent: gathers facts relevant to the user's request."""
