"""What a network really costs on a device: measurement protocol, backends, the device agent, the store."""
