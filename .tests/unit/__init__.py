# A package, so that pytest names these modules unit.test_<rule> and they do not clash with
# tests/test_*.py of the same name (tests/test_provenance.py, tests/test_explorer.py...).
