"""SMS channel service: dispatches to Twilio Messages, delivery and inbound webhooks."""
