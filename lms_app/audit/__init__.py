"""The audit trail: who did what to whom, per school, append-only (API.md "Data protection")."""
