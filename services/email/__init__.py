"""Email channel service: SendGrid v3 mail send, the signed event webhook, one-click unsubscribe."""
