"""Search spaces shipped with autopeft (YAML files beside this module)."""
