"""Running the SensorGuard services without Docker (``sensorguard stack ...``)."""
