"""autoresearch cockpit: supervise autonomous ML research."""
