"""The executor agent: runs allow-listed tools with validated arguments."""
