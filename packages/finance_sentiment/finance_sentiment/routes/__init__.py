"""The monitor's HTTP API, one router per resource."""
