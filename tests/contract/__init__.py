"""Contract suites: every registered model, source and sink checked the same way."""
