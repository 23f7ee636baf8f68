"""Authentication: API keys, JWT service tokens, IAM principals."""
