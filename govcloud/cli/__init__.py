"""The `govcloud` command line: thin click commands over the services."""
