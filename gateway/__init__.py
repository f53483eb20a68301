"""The HTTP gateway: it validates commands, writes rows and answers. It never calls a marketplace."""
