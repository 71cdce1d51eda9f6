"""The gateway's pure rules: what a request may ask for and which events it produces (no gRPC, Kafka or MongoDB)."""

SERVICE = "gateway"  # the producer of every event the gateway publishes
