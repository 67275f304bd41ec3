"""Security of the live API: tokens and roles, the audit log, device-id pseudonymisation."""
