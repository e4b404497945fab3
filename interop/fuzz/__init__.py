"""Structure-aware fuzzing of the sans-IO protocol layer: ``python -m interop.fuzz --help``."""
