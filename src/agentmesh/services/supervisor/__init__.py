"""The supervisor: the only service that routes, and the only one that holds state (Postgres checkpoints)."""
