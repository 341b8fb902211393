"""What SMS and WhatsApp share: Twilio Messages, its webhooks, reply keywords and the service app."""
