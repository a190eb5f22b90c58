"""Address spaces and physical memory."""
