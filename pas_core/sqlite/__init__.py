"""SQLite, with the write transactions of one process queued in the process (``base``)."""
