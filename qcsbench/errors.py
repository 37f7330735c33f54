"""The one exception type a user should ever see from a bad configuration."""


class ConfigError(ValueError):
    """A configuration value that cannot work; the message is one sentence naming the key."""
