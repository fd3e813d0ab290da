"""Forward models: pure numerics on arrays (no file I/O, no samplers)."""
