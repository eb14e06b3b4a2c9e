"""Who may do what: accounts, API tokens, sessions and the role policy."""
