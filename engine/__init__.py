"""The mailctl engine: everything that touches mail or state. Never imports mailctl."""
