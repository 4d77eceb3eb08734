"""The workerstate daemon: keeps the fleet's state in storage and serves the WorkerService API."""
