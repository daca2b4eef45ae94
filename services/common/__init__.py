"""What every fleetd service shares: settings, logging, the bus, the store, the daemon client."""
