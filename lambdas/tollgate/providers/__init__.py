"""Provider adapters: one module per provider. SDKs are imported lazily, on first use."""
