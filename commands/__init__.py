"""The bodies of the `vidsent` commands (cli.py is their door): analyze, watch and history."""
