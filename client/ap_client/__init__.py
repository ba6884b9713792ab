"""ap-client: a command-line client for Globus Action Providers (any provider URL).

Modules: api (HTTP: a globus_sdk.BaseClient), tokens (login/logout, stored
Globus tokens), waiting (following an action to completion), output (what the
user sees), cli (the click commands).
"""
