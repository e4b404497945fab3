"""Load and churn runs against a broker on this machine: ``python -m interop.load --help``."""
