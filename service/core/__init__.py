"""Settings and database plumbing shared by the API, the workers and the embedded mode."""
