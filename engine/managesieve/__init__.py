"""ManageSieve (RFC 5804, port 4190): `words.py` reads a client's commands (strings,
literals) and writes the server's strings, `session.py` the commands over the user's
scripts (engine/sieve/scripts.py), `server.py` the listener."""
