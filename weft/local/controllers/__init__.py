"""Level-triggered controllers: each reconciles the store towards what its objects declare."""
