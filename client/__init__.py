"""The workerstate client library."""
