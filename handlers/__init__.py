"""Request handlers, bound to the contract by operationId (one module per spec API file)."""
