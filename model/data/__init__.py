"""Training and evaluation data: the phantom generator (``phantom``) and render caches."""
