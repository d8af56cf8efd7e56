"""The servers barelab ships. Each is an ``Engine`` (see ``base``) that ``serve()`` drives."""
