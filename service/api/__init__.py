"""The HTTP API: one router per resource, mounted by ``service.main``."""
