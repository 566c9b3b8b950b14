"""Settings (flag -> environment -> settings.toml -> seed default), their schema, and where each pipeline keeps things."""
