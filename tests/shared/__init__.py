"""Tests are a package so that same-named modules (test_app.py) in sibling folders do not clash."""
