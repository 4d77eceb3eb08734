"""Generated bindings for workerstate/v1/workerstate.proto (see `make proto`)."""
