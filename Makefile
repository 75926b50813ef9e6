# The two commands of the README's quick start are `make demo` and `make test`.
.PHONY: demo test test-slow lint venv system-deps

venv:
	@scripts/bootstrap.sh

system-deps:
	@scripts/system-deps.sh

demo: venv
	.venv/bin/echocxr demo --out demo-output

lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

test: venv system-deps lint
	.venv/bin/python -m pytest -n 2 --dist loadgroup

test-slow: venv system-deps
	.venv/bin/python -m pytest -m slow
