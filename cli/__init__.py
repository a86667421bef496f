"""The `strongroom` command line: a second entrypoint over application/, beside the API.

One module per command group; `cli.main` assembles them, and every command module
shares `cli.context` (components, the operator, exit codes, time parsing).
"""
