"""scu package."""
