"""The small core every model shares: protocol, transports, server lifecycle, errors."""
