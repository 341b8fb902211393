"""WhatsApp channel service: Twilio Messages with ``whatsapp:`` addresses and the 24-hour window."""
