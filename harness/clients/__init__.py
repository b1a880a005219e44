"""Real client-device implementations the scenarios use against cores (paho-mqtt, the AWS IoT SDK)."""
