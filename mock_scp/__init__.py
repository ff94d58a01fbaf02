"""mock_scp package."""
