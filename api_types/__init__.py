"""Wire types generated from the contracts, one module per openapi/*.yaml (`make generate`)."""
