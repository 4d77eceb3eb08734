"""The workerstate daemon: owns the SQLite file and serves the WorkerService API."""
