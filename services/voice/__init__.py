"""Voice channel service: dispatches to Twilio Calls, TwiML with answering-machine detection and an IVR."""
