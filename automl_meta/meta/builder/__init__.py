"""meta.builder."""
