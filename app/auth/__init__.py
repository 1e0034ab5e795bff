"""Who calls: projects (tenants), API keys and their roles, quotas, and the audit log."""
