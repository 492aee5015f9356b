"""`pyscsi-targetctl`: the administrator's command-line client of the v1.0 API (issue #13 item 4).

It talks to a running server over HTTP(S) only, like any other API client: it imports nothing
from the server, protocol, SCSI, storage, API or model layers (an import-linter contract in
pyproject.toml keeps it so). `cli` holds the commands (click), `http` the requests and the
mapping of answers to exit codes, `output` the human tables.
"""
