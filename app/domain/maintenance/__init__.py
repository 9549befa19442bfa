"""The database's own work, driven from Python: retention and clean-up passes, their
scheduler."""
