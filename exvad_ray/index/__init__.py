"""The archive's index: Parquet tables under one location (see docs/CONTRACTS.md)."""
